"""Wake the control loop when desired state may have changed; never decide anything from an event.

Correct for git-sync: `desired` may be a symlink that is replaced atomically by a new one
pointing at a fresh worktree, after which the old target can be deleted. Watching the old target
would then go deaf, so for a symlink we watch its parent directory (the git-sync root)
recursively; for a plain directory, the directory itself. Events only set the wake-up event; the
loop re-reads desired state from a fresh snapshot, and a periodic resync catches anything the
watcher missed (overflowed inotify queues, network filesystems).

`extra` roots are watched too, even inside an ignored directory: the controller passes
`<state>/requests`, where `hotswap rollback | retry` drop their requests, so an operator's
request is taken at once rather than at the next resync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog
import watchfiles

log = structlog.get_logger("hotswap.watch")

# Editors and git write in bursts; group them but keep detection well under 100 ms.
DEBOUNCE_MS = 50
STEP_MS = 10


def watch_root(desired: Path) -> Path:
    desired = Path(desired).absolute()
    if desired.is_symlink() or not desired.exists():
        return desired.parent
    return desired


class DesiredWatcher:
    def __init__(
        self,
        desired: Path,
        wake: Callable[[], None],
        ignore: list[Path] | None = None,
        extra: list[Path] | None = None,
    ) -> None:
        self.desired = Path(desired).absolute()
        self.wake = wake
        self.ignore = [str(p.absolute()) for p in (ignore or [])]
        self.extra = [Path(p).absolute() for p in (extra or [])]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotswap-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _relevant(self, _change: watchfiles.Change, path: str) -> bool:
        if any(path == str(p) or path.startswith(f"{p}/") for p in self.extra):
            return True
        return not any(path == p or path.startswith(p + "/") for p in self.ignore)

    def _run(self) -> None:
        root = watch_root(self.desired)
        while not self._stop.is_set():
            try:
                roots = [root, *(p for p in self.extra if p.is_dir())]
                for _changes in watchfiles.watch(
                    *roots,
                    watch_filter=self._relevant,
                    debounce=DEBOUNCE_MS,
                    step=STEP_MS,
                    stop_event=self._stop,
                    recursive=True,
                    raise_interrupt=False,
                    yield_on_timeout=False,
                ):
                    self.wake()
            except Exception as e:
                log.warning("watch.error", root=str(root), error=str(e))
                self._stop.wait(1.0)
            root = watch_root(self.desired)
