"""Exit codes, the same for every `hotswap` command (scripts and the tests rely on them).

0 ok, 1 runtime failure (does not verify, refused, timed out, no daemon), 2 usage or invalid
input, 3 (`plan` only) changes pending.
"""

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_PENDING = 0, 1, 2, 3
