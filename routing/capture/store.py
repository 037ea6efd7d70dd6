"""Per-call capture files on the node, with bounded retention.

One file per Call-ID in the capture directory (mode 0700), named by the SHA-256 of the Call-ID
(a Call-ID may hold any character, RFC 3261 section 25.1 ``word``), mode 0600: the HEP3 packets
of every SIP message of that call, appended as they arrive (a HEP3 packet carries its own length,
so the file is their concatenation; :func:`routing.capture.hep.split` reads it back).

Retention (settings ``capture.max_age_s`` and ``capture.max_mb``): a call whose last message is
older than ``max_age_s`` is deleted by :meth:`CaptureStore.sweep`; when the files together pass
``max_bytes`` the calls written to least recently are deleted first, at once.  Only the collector
(``routing/monitor/collector.py``) writes; ``edgectl trace`` reads.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from routing.capture import hep

__all__ = ["CaptureStore", "CaptureFile", "file_name", "SUFFIX"]

SUFFIX = ".hep"
_DIR_MODE = 0o700
_FILE_MODE = 0o600
#: files the writer keeps open (the calls written to most recently): no open/close per message
_OPEN_FILES = 256


@functools.lru_cache(maxsize=4096)
def file_name(call_id: str) -> str:
    """The capture file name of ``call_id`` (cached: every message of a call asks)."""
    return hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[:40] + SUFFIX


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One call's capture file: its path, size (bytes) and last write (s since the epoch)."""

    path: Path
    size: int
    mtime: float

    def packets(self) -> list[hep.HepPacket]:
        """The call's messages in capture order (a packet that does not parse is left out)."""
        out = []
        for raw in hep.split(self.path.read_bytes()):
            try:
                out.append(hep.parse(raw))
            except hep.HepError:
                continue
        return out


class CaptureStore:
    """The capture directory: appends (collector) and reads (``edgectl trace``).

    Args:
        directory: where the files are (created 0700 by :meth:`open`).
        max_bytes: bound of the files' total size (bytes).
        max_age_s: a call is kept this long after its last message (s).
    """

    def __init__(self, directory: Path, max_bytes: int, max_age_s: float) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        #: file name -> (size, last write), least recently written first
        self._index: OrderedDict[str, tuple[int, float]] = OrderedDict()
        #: file name -> open descriptor (O_APPEND), least recently written first
        self._fds: OrderedDict[str, int] = OrderedDict()
        self.total = 0

    # -- writer (the collector) -------------------------------------------------
    def open(self) -> None:
        """Create the directory (0700, tightened if it exists) and index the files already there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, _DIR_MODE)
        files = sorted(self.files(), key=lambda f: f.mtime)
        self._index = OrderedDict((f.path.name, (f.size, f.mtime)) for f in files)
        self.total = sum(f.size for f in files)

    def has(self, call_id: str) -> bool:
        """Whether ``call_id`` has a capture (the writer's index: no file system access)."""
        return file_name(call_id) in self._index

    def append(self, call_id: str, packet: bytes, now: float) -> None:
        """Append HEP3 packets (one, or several one after the other) to ``call_id``'s file in one
        ``write`` (a reader never sees half a packet), then enforce the size bound."""
        name = file_name(call_id)
        fd = self._fds.pop(name, None)
        if fd is None:
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
            while len(self._fds) >= _OPEN_FILES:
                os.close(self._fds.popitem(last=False)[1])
        self._fds[name] = fd
        os.write(fd, packet)
        size, _ = self._index.pop(name, (0, now))
        self._index[name] = (size + len(packet), now)
        self.total += len(packet)
        while self.total > self.max_bytes and len(self._index) > 1:
            self._drop(next(iter(self._index)))

    def sweep(self, now: float) -> int:
        """Delete the calls whose last message is older than ``max_age_s``; returns how many."""
        dropped = 0
        while self._index:
            name, (_, last) = next(iter(self._index.items()))
            if now - last <= self.max_age_s:
                break
            self._drop(name)
            dropped += 1
        return dropped

    def close(self) -> None:
        """Close the files kept open."""
        while self._fds:
            os.close(self._fds.popitem()[1])

    def _drop(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        size, _ = self._index.pop(name)
        self.total -= size
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            pass

    # -- readers (edgectl trace) ------------------------------------------------
    def files(self) -> Iterator[CaptureFile]:
        """Every capture file, in no particular order (none when the directory does not exist)."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.endswith(SUFFIX):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted by the collector meanwhile
            yield CaptureFile(Path(entry.path), st.st_size, st.st_mtime)

    def call(self, call_id: str) -> CaptureFile | None:
        """The capture of ``call_id``, or None."""
        path = self.directory / file_name(call_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return CaptureFile(path, st.st_size, st.st_mtime)

    def recent(self) -> list[CaptureFile]:
        """Every capture file, the most recently written first."""
        return sorted(self.files(), key=lambda f: f.mtime, reverse=True)
