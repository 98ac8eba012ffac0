"""AuditLog: an append-only, fsync'd JSON-lines record of every trading call, off the event loop."""

from __future__ import annotations

import asyncio
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
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
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
