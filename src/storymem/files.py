"""Small file helpers shared by runs, training and the toy recipe: atomic JSON, a folder lock."""

from __future__ import annotations

import fcntl
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


class FolderLock:
    """One process at a time per folder, by an OS lock (flock) on `.storymem.lock`: taking it is
    atomic, so two processes that start at the same instant cannot both hold it, and the OS lets
    go of it when its process ends (killed or crashed), so a dead holder never blocks a folder.
    The file also holds the holder's host and PID, for the message others get."""

    NAME = ".storymem.lock"

    def __init__(self, folder: Path):
        self.file = Path(folder) / self.NAME
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(10):  # only a holder releasing at that very moment makes us try again
            fd = os.open(self.file, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(
                    f"{self.file.parent}: another storymem process ({self._owner()}) is using this folder; wait for it"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we locked it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, me.encode())
            self._fd, self.held = fd, True
            return
        raise InputError(f"{self.file}: cannot take the folder's lock; try again")

    def _owner(self) -> str:
        """'PID n on host' of the holder, as far as its file says."""
        try:
            host, pid = self.file.read_text().split()
            return f"PID {int(pid)} on {host}"
        except (OSError, ValueError):
            return "starting"

    def release(self) -> None:
        if self.held:
            self.file.unlink(missing_ok=True)  # before letting go, so no one locks a file about to vanish
            os.close(self._fd)
            self._fd, self.held = None, False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
