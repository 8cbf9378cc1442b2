"""The installed hotswap version, for `hotswap --version` and the server's metadata endpoint."""

from __future__ import annotations


def hotswap_version() -> str:
    try:
        from importlib.metadata import version

        return version("hotswap")
    except Exception:  # not installed (a checkout on PYTHONPATH): say so rather than fail
        return "0+unknown"
