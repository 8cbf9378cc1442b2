"""The configuration shared by the daemon and every command: one file, the environment, flags.

`reconciler.cli.main` parses every command line through `layers.parse_args`, which reads the
config file (`file`), the `HOTSWAP_<KEY>` environment variables and turns both into the
defaults of the matching command-line options (`keys`), so a flag always wins and every command
(`run`, `status`, `journal`, `rollback`, ...) sees the same state directory. The keys are the
properties of `schemas/config.v1.json`; a daemon option whose dest is a key is configurable with
no code of its own. `show` is `hotswap config show`.
"""
