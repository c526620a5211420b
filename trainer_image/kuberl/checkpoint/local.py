"""A checkpoint store in a local (or network-mounted) directory.

Every write goes to a hidden temporary file that is fsynced and then renamed over the target, and
the directory is fsynced after, so a power loss leaves either the old file or the new one, never a
torn one; the manifest-last protocol in store.py then makes the whole checkpoint atomic.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

from kuberl.checkpoint.errors import CheckpointError
from kuberl.checkpoint.manifest import MANIFEST_FILE
from kuberl.checkpoint.store import CheckpointStore, Entry
from kuberl.checkpoint.uri import Location


def _reason(exc: OSError) -> str:
    """The OS's words ("Permission denied"), without the path the caller's message already names."""
    return exc.strerror or str(exc) or type(exc).__name__


def _fsync_dir(path: Path) -> None:
    """Persist a rename; some filesystems (and all of Windows) cannot open directories, which is fine."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalCheckpointStore(CheckpointStore):
    """Checkpoints as `<root>/<name>/<file>` with `<root>/latest`; the root is created on first write."""

    def __init__(self, location: Location) -> None:
        if location.scheme != "file":
            raise ValueError(f"not a local location: {location.uri}")
        super().__init__(location)
        self.root = Path(location.path)

    def check_access(self) -> None:
        """Create the root if needed and prove it writable with a probe file."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise CheckpointError(
                f"checkpoint location {self.uri} is not usable: it exists and is not a directory"
            ) from exc
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint location {self.uri} cannot be created: {_reason(exc)}"
            ) from exc
        if not self.root.is_dir():
            raise CheckpointError(f"checkpoint location {self.uri} is not usable: it is not a directory")
        probe = self.root / f".access-check-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise CheckpointError(f"checkpoint location {self.uri} is not writable: {_reason(exc)}") from exc

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read {self._path(key)}: {_reason(exc)}") from exc

    def _write(self, key: str, data: bytes) -> None:
        target = self._path(key)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
            raise CheckpointError(f"cannot write {target}: {_reason(exc)}{hint}") from exc

    def _scan(self) -> dict[str, Entry]:
        try:
            children = [c for c in self.root.iterdir() if not c.name.startswith(".") and c.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise CheckpointError(f"cannot list {self.uri}: {_reason(exc)}") from exc
        entries = {}
        for child in children:
            files: dict[str, int] = {}
            modified = _mtime(child)
            for dirpath, dirnames, filenames in os.walk(child):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for fname in filenames:
                    if fname.startswith("."):
                        continue  # temporary files of a write in progress
                    path = Path(dirpath, fname)
                    try:
                        st = path.stat()
                    except OSError:
                        continue  # deleted while walking
                    files[path.relative_to(child).as_posix()] = st.st_size
                    modified = max(modified, st.st_mtime)
            entries[child.name] = Entry(files=files, modified=modified)
        return entries

    def _exists(self, name: str) -> bool:
        return self._path(name).exists()

    def _delete(self, name: str) -> None:
        directory = self._path(name)
        try:
            (directory / MANIFEST_FILE).unlink(missing_ok=True)
            _fsync_dir(directory)
            shutil.rmtree(directory)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"cannot delete {directory}: {_reason(exc)}") from exc


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
