"""Registration trunks kept in Kamailio's uac module (routing.kamailio.registration)."""

from __future__ import annotations

import importlib
import json
import socket
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from routing.call.registration import NO_CREDENTIALS, UAC_REG_ONLINE
from routing.ops.secrets import SecretBox, create_key
from routing.tables.model import Registration
from tests.unit.kamailio.conftest import edge_over_fakes
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, RT

UUID = "c0ntact"
CONTACT = "203.0.113.1:5060"


class FakeUac:
    """The uac module's registrations behind jsonrpcs ``exec``: each answer lands in
    ``$jsonrpl(body)``; ``errors`` makes a method answer an error."""

    def __init__(self, ksr: FakeKSR) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, list[Any]]] = []
        self.errors: dict[str, tuple[int, str]] = {}
        self._ksr = ksr
        ksr.module.jsonrpcs = types.SimpleNamespace(exec=self._exec)

    def _exec(self, text: str) -> int:
        request = json.loads(text)
        method, params = request["method"], request["params"]
        self.calls.append((method, params))
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if method in self.errors:
            code, message = self.errors[method]
            answer["error"] = {"code": code, "message": message}
        elif method == "uac.reg_dump":
            answer["result"] = list(self.records.values())
        elif method == "uac.reg_add":
            self.records[params[0]] = {"l_uuid": params[0], "flags": 0, "timer_expires": 0}
            answer["result"] = None
        elif method == "uac.reg_remove":
            self.records.pop(params[0])
            answer["result"] = None
        elif method == "uac.reg_unregister":
            answer["result"] = None
        self._ksr.pv["$jsonrpl(body)"] = json.dumps(answer)
        return 1

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


@pytest.fixture
def registration(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.registration")


@pytest.fixture
def uac(ksr: FakeKSR) -> FakeUac:
    ksr.module.htable.sht_get = lambda table, key: None  # no REGISTER reply seen yet
    return FakeUac(ksr)


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    create_key(tmp_path / "secret.key")
    return SecretBox(tmp_path / "secret.key")


@pytest.fixture
def published(store: FakeStore) -> list[tuple[dict[str, dict[str, str]], int]]:
    out: list[tuple[dict[str, dict[str, str]], int]] = []
    store.publish_registrations = lambda states, ttl_s: out.append((states, ttl_s))  # type: ignore[attr-defined]
    return out


@pytest.fixture
def edge(kemi: types.ModuleType, store: FakeStore, tmp_path: Path, box: SecretBox) -> Any:
    """An edge with a UDP contact address whose store holds a registration trunk with credentials."""
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], register=Registration("192.0.2.50:5060", UUID))
    store.secrets["telnyx"] = ("user1", box.encrypt("s3cret"))
    settings = replace(RT, secret_key_file=str(tmp_path / "secret.key"), reg_contacts=(("udp", CONTACT),))
    return edge_over_fakes(kemi, store, settings)


# -- rpc ---------------------------------------------------------------------------------------------------


def test_rpc_returns_the_result_and_names_only_code_and_message_of_an_error(registration: types.ModuleType,
                                                                           uac: FakeUac) -> None:
    uac.records["x"] = {"l_uuid": "x"}
    assert registration.rpc("uac.reg_dump") == [{"l_uuid": "x"}]
    uac.errors["uac.reg_add"] = (500, "Failed to add record")
    with pytest.raises(RuntimeError) as err:
        registration.rpc("uac.reg_add", "x", "s3cret")
    assert str(err.value) == "uac.reg_add: 500 Failed to add record"


def test_rpc_without_an_answer_body_returns_none(registration: types.ModuleType, ksr: FakeKSR) -> None:
    ksr.module.jsonrpcs = types.SimpleNamespace(exec=lambda text: 1)
    assert registration.rpc("uac.reg_reload") is None


# -- sync ----------------------------------------------------------------------------------------------------


def test_sync_adds_the_registration_of_a_trunk_with_credentials_and_publishes_it_pending(
        registration: types.ModuleType, uac: FakeUac, edge: Any, published: list) -> None:
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump", "uac.reg_add"]
    params = uac.calls[1][1]
    assert (params[0], params[1], params[6], params[7]) == (UUID, "telnyx", "user1", "s3cret")
    assert params[-1] == CONTACT
    assert list(edge.worker.registered) == [UUID]
    ((states, ttl_s),) = published
    state = states["telnyx"]
    assert (state["state"], state["registrar"], state["contact"]) == ("pending", "192.0.2.50:5060",
                                                                      f"sip:{UUID}@{CONTACT}")
    assert state["addresses"] == ""  # the registrar is an address: nothing to resolve
    assert ttl_s == 60  # three sync intervals (5 s), at least 60 s


def test_second_sync_changes_nothing_and_publishes_kamailios_state(registration: types.ModuleType, uac: FakeUac,
                                                                   edge: Any, published: list) -> None:
    registration.sync_registrations(edge.worker)
    expires = int(time.time()) + 3000
    uac.records[UUID].update(flags=UAC_REG_ONLINE, timer_expires=expires)
    uac.calls.clear()
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump"]
    state = published[-1][0]["telnyx"]
    assert (state["state"], state["expires_at"]) == ("registered", str(expires))


def test_new_password_re_adds_the_registration(registration: types.ModuleType, uac: FakeUac, edge: Any,
                                               store: FakeStore, box: SecretBox, published: list) -> None:
    registration.sync_registrations(edge.worker)
    first = edge.worker.registered[UUID]
    store.secrets["telnyx"] = ("user1", box.encrypt("n3w"))
    uac.calls.clear()
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump", "uac.reg_unregister", "uac.reg_remove", "uac.reg_add"]
    assert uac.calls[-1][1][7] == "n3w"
    assert edge.worker.registered[UUID] != first


def test_registration_no_trunk_wants_is_removed_even_when_it_cannot_be_unregistered(
        registration: types.ModuleType, uac: FakeUac, edge: Any, store: FakeStore, published: list) -> None:
    registration.sync_registrations(edge.worker)
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], register=None)
    uac.errors["uac.reg_unregister"] = (404, "Record not found")
    uac.calls.clear()
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump", "uac.reg_unregister", "uac.reg_remove"]
    assert uac.records == {} and edge.worker.registered == {}
    assert published[-1][0] == {}


def test_trunk_without_credentials_is_published_failed_and_not_added(registration: types.ModuleType, uac: FakeUac,
                                                                     edge: Any, store: FakeStore,
                                                                     published: list) -> None:
    del store.secrets["telnyx"]
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump"]
    state = published[-1][0]["telnyx"]
    assert (state["state"], state["reason"]) == ("failed", NO_CREDENTIALS)


def test_password_that_cannot_be_decrypted_fails_the_trunk_and_adds_nothing(
        registration: types.ModuleType, uac: FakeUac, edge: Any, store: FakeStore, tmp_path: Path,
        published: list) -> None:
    create_key(tmp_path / "other.key")
    store.secrets["telnyx"] = ("user1", SecretBox(tmp_path / "other.key").encrypt("s3cret"))
    registration.sync_registrations(edge.worker)
    assert uac.methods() == ["uac.reg_dump"] and edge.worker.registered == {}
    state = published[-1][0]["telnyx"]
    assert state["state"] == "failed" and "cannot be decrypted" in state["reason"]


def test_states_live_three_sync_intervals_when_that_is_above_a_minute(registration: types.ModuleType, uac: FakeUac,
                                                                      edge: Any, published: list) -> None:
    edge.worker.settings = replace(edge.worker.settings, reg_sync_interval_s=30)
    registration.sync_registrations(edge.worker)
    assert published[-1][1] == 90


# -- registrar addresses --------------------------------------------------------------------------------------


def test_registrar_name_resolves_to_its_sorted_addresses_and_a_literal_is_not_looked_up(
        registration: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def getaddrinfo(host: str, port: object, proto: int = 0) -> list[tuple[Any, ...]]:
        asked.append(host)
        if host == "gone.example.net":
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_DGRAM, proto, "", (address, 0))
                for address in ("192.0.2.9", "192.0.2.8", "192.0.2.9")]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert registration._resolve("sip.example.net") == ["192.0.2.8", "192.0.2.9"]
    assert registration._resolve("gone.example.net") == []
    assert registration._resolve("192.0.2.50") == [] and registration._resolve("[2001:db8::1]") == []
    assert asked == ["sip.example.net", "gone.example.net"]
