"""Fakes of what the fake KSR leaves out: Kamailio's htables with their iterator (``$sht(...)``
reads included) and jsonrpcs, and any further KSR function a test needs (:func:`provide`)."""

from __future__ import annotations

import json
import re
import types
from typing import Any

from tests.unit.kamailio.fakeksr import FakeKSR

_SHT = re.compile(r"^\$sht\((\w+)=>(.*)\)$")


def provide(ksr: FakeKSR, name: str, result: Any = 1) -> None:
    """Add the KSR function ``group.func`` answering ``result``; its calls are kept in ``ksr.calls``."""
    group, _, func = name.partition(".")

    def call(*args: Any) -> Any:
        ksr.calls.append((name, args))
        return result

    namespace = getattr(ksr.module, group, None)
    if namespace is None:
        namespace = types.SimpleNamespace()
        setattr(ksr.module, group, namespace)
    setattr(namespace, func, call)


class HTables:
    """Kamailio's htables as dicts, with the iterator the timers walk them with; ``locks`` keeps
    every slot lock and unlock, ``rpcs`` every jsonrpcs ``exec`` (parsed)."""

    def __init__(self, ksr: FakeKSR) -> None:
        self.tables: dict[str, dict[str, str]] = {}
        self.rpcs: list[dict[str, Any]] = []
        self.locks: list[tuple[str, str, str]] = []
        self._walks: dict[str, list[tuple[str, str]]] = {}
        self._ksr = ksr
        ht = ksr.module.htable
        ht.sht_sets, ht.sht_rm, ht.sht_gete = self._set, self._rm, self._get
        ht.sht_iterator_start, ht.sht_iterator_next, ht.sht_iterator_end = self._start, self._next, self._end
        ht.sht_lock = lambda table, key: self.locks.append(("lock", table, key)) or 1
        ht.sht_unlock = lambda table, key: self.locks.append(("unlock", table, key)) or 1
        get = ksr.module.pv.get

        def pv_get(name: str) -> Any:
            match = _SHT.match(name)
            return self.table(match.group(1)).get(match.group(2)) if match else get(name)

        ksr.module.pv.get = pv_get
        ksr.module.jsonrpcs = types.SimpleNamespace(exec=lambda text: self.rpcs.append(json.loads(text)) or 1)

    def table(self, name: str) -> dict[str, str]:
        return self.tables.setdefault(name, {})

    def _set(self, table: str, key: str, value: str) -> int:
        self.table(table)[key] = value
        return 1

    def _rm(self, table: str, key: str) -> int:
        self.table(table).pop(key, None)
        return 1

    def _get(self, table: str, key: str) -> str:
        return self.table(table).get(key, "")

    def _start(self, name: str, table: str) -> int:
        self._walks[name] = list(self.table(table).items())
        return 1

    def _next(self, name: str) -> int:
        if not self._walks[name]:
            return -1
        key, value = self._walks[name].pop(0)
        self._ksr.pv[f"$shtitkey({name})"], self._ksr.pv[f"$shtitval({name})"] = key, value
        return 1

    def _end(self, name: str) -> int:
        del self._walks[name]
        return 1
