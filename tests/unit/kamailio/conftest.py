"""Fixtures of the plugin's unit tests: the package ``routing.kamailio`` imported against the fake
``KSR`` (tests/unit/kamailio/fakeksr.py), and an :class:`routing.kamailio.entry.Edge` over the fakes."""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import replace
from typing import Any, Iterator

import pytest

from tests.unit.kamailio.fakeksr import (RT, SIDE_SOCKETS, FakeKSR, FakeNg, FakeStore, RecordingWriter,
                                         forget_plugin, provisioned_store)

@pytest.fixture
def ksr() -> FakeKSR:
    return FakeKSR()


@pytest.fixture
def kemi(ksr: FakeKSR, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """routing.kamailio.entry imported against the fake KSR, and forgotten afterwards."""
    monkeypatch.setitem(sys.modules, "KSR", ksr.module)
    forget_plugin()
    module = importlib.import_module("routing.kamailio.entry")
    assert module.KSR is ksr.module
    try:
        yield module
    finally:
        forget_plugin()


@pytest.fixture
def store() -> FakeStore:
    return provisioned_store()


def edge_over_fakes(kemi: types.ModuleType, store: FakeStore, settings: Any = RT) -> Any:
    """An Edge whose worker uses the fake store, a recording call-record writer and a fake ng client."""
    router = kemi.Edge(settings)
    router.worker.store = store
    router.worker.writer = RecordingWriter()
    router.worker.ngclient = FakeNg()
    return router


@pytest.fixture
def router(kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR) -> Any:
    return edge_over_fakes(kemi, store)


@pytest.fixture
def sided_router(kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR) -> Any:
    return edge_over_fakes(kemi, store, replace(RT, media_sides=True, sip_sockets=SIDE_SOCKETS))


@pytest.fixture
def cdr_table(ksr: FakeKSR) -> dict[str, str]:
    """The htable ``cdr`` as a dict (sht_sets / sht_gete / sht_rm on it)."""
    table: dict[str, str] = {}
    ksr.module.htable.sht_sets = lambda name, key, value: table.__setitem__(key, value) if name == "cdr" else 1
    ksr.module.htable.sht_gete = lambda name, key: table.get(key, "") if name == "cdr" else ""
    ksr.module.htable.sht_rm = lambda name, key: table.pop(key, None) if name == "cdr" else None
    return table
