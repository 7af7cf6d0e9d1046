"""Small file helpers shared by runs, training and the toy recipe: atomic JSON, a folder lock."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from .errors import InputError


def write_json(path: Path, data) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def read_json(path: Path, what: str, fix: str):
    """A JSON file we wrote, or one line naming it, what it should be and what to do."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: the {what} is unreadable or damaged ({type(e).__name__}); {fix}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class FolderLock:
    """One process at a time per folder: a lock file holding the owner's host and PID. A lock
    whose process is gone (killed, crashed) on this host is stale and taken over."""

    NAME = ".storymem.lock"

    def __init__(self, folder: Path):
        self.file = Path(folder) / self.NAME
        self.held = False

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # stale: take it over once
                    self.file.unlink(missing_ok=True)
                    continue
                raise InputError(
                    f"{self.file.parent}: another storymem process ({owner}) is using this folder; "
                    f"wait for it, or if it is gone delete {self.file}"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return
        raise InputError(f"{self.file}: cannot take the folder's lock; delete the file and try again")

    def _owner(self) -> str | None:
        """'host PID' of a live holder, or None for a stale or unreadable lock."""
        try:
            host, pid = self.file.read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            return None
        if host == socket.gethostname() and not _alive(pid):
            return None
        return f"PID {pid} on {host}"

    def release(self) -> None:
        if self.held:
            self.file.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
