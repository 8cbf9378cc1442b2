"""The build cache: `artifacts/<build key>/model.<backend>` plus `meta.json`, written last.

An artifact counts as present only when its `meta.json` exists (renamed into place after the
artifact itself), and it is loaded only after its own sha256 matches the one in `meta.json`: a
torn or tampered artifact is rebuilt, never loaded.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from reconciler.core.errors import InvalidInput, RuntimeFailure, TransientError
from reconciler.state.atomic import atomic_write, commit_file, temp_path_for
from reconciler.verify.model import VerifiedModel
from runtime.backends import Backend, BackendError, BuildOptions
from runtime.fsutil import sha256_file


def _disk_nearly_full(directory: Path, model: Path) -> bool:
    """Less free space than a build of this model could need (about twice its size)."""
    try:
        return shutil.disk_usage(directory).free < 2 * model.stat().st_size + (16 << 20)
    except OSError:
        return False


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, key: str) -> Path:
        return self.root / key

    def keys(self) -> frozenset[str]:
        return frozenset(d.name for d in self.root.iterdir() if (d / "meta.json").is_file())

    def build(self, verified: VerifiedModel, key: str, backend: Backend) -> Path:
        """Build and store the artifact; a full disk is a transient failure, never a bad model."""
        spec = verified.spec
        try:
            return self._build(verified, key, backend)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                shutil.rmtree(self._dir(key), ignore_errors=True)
                raise TransientError(
                    f"build {spec.name} v{spec.version}: no space left on device in {self.root}"
                    " (free some space; the build is retried)",
                    reason="disk-full",
                ) from e
            raise

    def _build(self, verified: VerifiedModel, key: str, backend: Backend) -> Path:
        spec = verified.spec
        final = self._dir(key) / f"model.{backend.name}"
        tmp = temp_path_for(final)
        options = BuildOptions(
            precision=spec.precision,
            shapes={name: (r.min, r.opt, r.max) for name, r in spec.shapes},
        )
        try:
            backend.build(verified.path, tmp, options)
        except BackendError as e:
            tmp.unlink(missing_ok=True)
            if _disk_nearly_full(tmp.parent, verified.path):
                # Backends report a failed write as their own error: judge by the disk itself.
                raise OSError(errno.ENOSPC, f"{e}") from e
            cls = InvalidInput if e.reason == "precision-unsupported" else RuntimeFailure
            raise cls(f"build {spec.name} v{spec.version}: {e}", reason=e.reason) from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        digest = sha256_file(tmp)
        commit_file(tmp, final)
        meta = {
            "key": key,
            "artifact": final.name,
            "sha256": digest,
            "backend": backend.name,
            "backend_version": backend.version,
            "precision": spec.precision,
            "source_sha256": spec.sha256,
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write(
            self._dir(key) / "meta.json", json.dumps(meta, indent=2, sort_keys=True).encode()
        )
        return final

    def open(self, key: str, set_aside: Callable[[Path, str], None] | None = None) -> Path:
        """The artifact for `key`, checked against its recorded sha256. A bad one is handed to
        `set_aside(directory, message)` (reconciler.ops.repair keeps it for a look), or else
        discarded; either way it is gone from the cache and is rebuilt."""
        directory = self._dir(key)
        try:
            meta = json.loads((directory / "meta.json").read_text())
            path = directory / meta["artifact"]
            ok = meta.get("key") == key and sha256_file(path) == meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            done = "set aside" if set_aside is not None else "discarded"
            message = f"build artifact {key[:12]} is damaged; {done}, it will be rebuilt"
            if set_aside is not None and directory.is_dir():
                set_aside(directory, message)
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeFailure(message, reason="artifact-damaged")
        return path

    def remove(self, key: str) -> None:
        # meta.json first: from that instant the key counts as absent, whatever is left behind.
        (self._dir(key) / "meta.json").unlink(missing_ok=True)
        shutil.rmtree(self._dir(key), ignore_errors=True)
