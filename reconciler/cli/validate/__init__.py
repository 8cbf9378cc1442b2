"""`hotswap validate PATH...`: check a GitOps repository's files in CI, before devices read them.

`command` is the command (paths, options, the three output formats, exit codes); `checks` does
what a device would do with one desired file short of serving it: schema, the model's bytes
(local sources always, remote ones with `--fetch`), the signed manifest against a trust dir, and
the ONNX interface against the declared contract.
"""
