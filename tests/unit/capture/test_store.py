"""routing.capture.store: per-call files (0700/0600), appends, retention by age and by size."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from routing.capture.hep import HepPacket, build
from routing.capture.store import CaptureStore, file_name


def packet(call_id: str, ts: float = 1.0, size: int = 0) -> bytes:
    sip = f"BYE sip:x SIP/2.0\r\nCall-ID: {call_id}\r\n\r\n".encode() + b"x" * size
    return build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, ts, sip))


def test_files_and_directory_are_the_operators_only(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "captures", 10**6, 60)
    os.umask(0o022)
    store.open()
    store.append("a@b", packet("a@b"), 100.0)
    assert stat.S_IMODE((tmp_path / "captures").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "captures" / file_name("a@b")).stat().st_mode) == 0o600


def test_open_tightens_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "captures").mkdir(mode=0o755)
    CaptureStore(tmp_path / "captures", 10**6, 60).open()
    assert stat.S_IMODE((tmp_path / "captures").stat().st_mode) == 0o700


def test_appends_read_back_in_order(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path, 10**6, 60)
    store.open()
    for ts in (1.0, 2.0, 3.0):
        store.append("a@b", packet("a@b", ts), 100.0)
    store.append("other", packet("other"), 100.0)
    found = store.call("a@b")
    assert [p.ts for p in found.packets()] == [1.0, 2.0, 3.0]
    assert store.call("missing") is None
    assert store.total == sum(f.size for f in store.files())


def test_file_names_hide_any_character_of_a_call_id(tmp_path: Path) -> None:
    odd = "../../etc/passwd a/b\x00"
    assert "/" not in file_name(odd) and len(file_name(odd)) == 44


def test_age_bound_drops_calls_by_last_message(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path, 10**6, 60)
    store.open()
    store.append("old", packet("old"), 100.0)
    store.append("busy", packet("busy"), 100.0)
    store.append("busy", packet("busy"), 150.0)  # a later message keeps the call
    assert store.sweep(161.0) == 1
    assert store.call("old") is None and store.call("busy") is not None
    assert not store.has("old") and store.has("busy")
    assert store.sweep(209.0) == 0
    assert store.sweep(211.0) == 1 and store.total == 0


def test_size_bound_drops_least_recently_written_calls_first(tmp_path: Path) -> None:
    one = len(packet("c1", size=400))
    store = CaptureStore(tmp_path, 3 * one, 3600)
    store.open()
    for name, now in (("c1", 1.0), ("c2", 2.0), ("c3", 3.0)):
        store.append(name, packet(name, size=400), now)
    store.append("c1", packet("c1", size=0), 4.0)  # c1 written again: c2 is now the oldest
    assert store.call("c2") is None and store.call("c1") and store.call("c3")
    assert store.total <= 3 * one
    assert store.total == sum(f.size for f in store.files())
    store.close()


def test_reopen_indexes_existing_files_oldest_first(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path, 10**6, 60)
    store.open()
    store.append("a", packet("a"), 1.0)
    store.append("b", packet("b"), 2.0)
    os.utime(tmp_path / file_name("a"), (1000, 1000))
    os.utime(tmp_path / file_name("b"), (2000, 2000))
    again = CaptureStore(tmp_path, 10**6, 60)
    again.open()
    assert again.total == store.total
    assert again.sweep(1070.0) == 1 and again.call("a") is None and again.call("b")
    assert [f.path.name for f in again.recent()] == [file_name("b")]


def test_many_calls_at_once_keep_a_bounded_number_of_files_open(tmp_path: Path) -> None:
    import routing.capture.store as store_mod

    store = CaptureStore(tmp_path, 10**9, 3600)
    store.open()
    for i in range(store_mod._OPEN_FILES + 50):
        store.append(f"c{i}", packet(f"c{i}"), float(i))
    assert len(store._fds) == store_mod._OPEN_FILES
    store.append("c0", packet("c0", ts=2.0), 1000.0)  # reopened after being closed
    assert [p.ts for p in store.call("c0").packets()] == [1.0, 2.0]
    store.close()
    assert not store._fds
