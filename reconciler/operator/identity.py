"""Who asked: the user name an operator request records, right under `sudo` too.

`reconciler.operator.channel.submit` calls `requesting_user`. Under `sudo` the process runs as
root and `$USER` says root; the person is `$SUDO_USER` (uid `$SUDO_UID`), recorded as
"alice (uid 1000) via sudo". The variables are believed only when the process really is root,
since any user may set them in their own shell.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping


def requesting_user(
    environ: Mapping[str, str] | None = None,
    euid: Callable[[], int] = os.geteuid,
    login: Callable[[], str] = getpass.getuser,
) -> str:
    environ = os.environ if environ is None else environ
    sudo_user = environ.get("SUDO_USER", "")
    if sudo_user and euid() == 0:
        uid = environ.get("SUDO_UID", "")
        return f"{sudo_user} (uid {uid}) via sudo" if uid.isdigit() else f"{sudo_user} via sudo"
    try:
        return login()
    except (KeyError, OSError):  # no passwd entry and no $USER (containers)
        return f"uid {euid()}"
