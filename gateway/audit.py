"""AuditLog: an append-only, fsync'd JSON-lines record of every trading call, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from gateway.errors import AuditUnavailable


class AuditLog:
    """Each `write` appends one line and fsyncs before returning, in a worker thread.

    A lock keeps lines whole and in order across concurrent calls; the event loop only awaits.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.lines_written = 0

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self.path)!r})"

    def _append(self, line: bytes) -> None:
        """The whole line or nothing: a short write (a full disk returns one without an error)
        is finished or, failing that, cut back off so no half line is left to be read as one."""
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(line)
                    while view:
                        written = os.write(fd, view)
                        if written <= 0:
                            raise OSError(errno.ENOSPC, "no byte written")
                        view = view[written:]
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
            self.lines_written += 1

    async def write(self, record: dict[str, Any]) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        line = (json.dumps(entry, separators=(",", ":"), sort_keys=False) + "\n").encode()
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise AuditUnavailable(exc.strerror or type(exc).__name__) from exc

    def check_writable(self) -> None:
        """Start-up check: the directory exists and the file can be opened for appending."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise AuditUnavailable(exc.strerror or type(exc).__name__) from exc
