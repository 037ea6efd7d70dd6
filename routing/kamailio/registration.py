"""Registration trunks: the ``uac`` module's registrations kept equal to the registration trunks
in redis, and each one's state published (pure rules in :mod:`routing.registration`); runs in
one rtimer process.  Kamailio's RPCs are run in-process through jsonrpcs ``exec``."""

from __future__ import annotations

import ipaddress
import json
import socket
import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import registration
from ..call import sides as netsides
from ..ops.secrets import SecretError
from ..tables import reglock
from . import callstate as cs
from .worker import Worker, pv

__all__ = ["rpc", "sync_registrations", "LOCK_SYNCS"]

#: a nodes=one registration lock lives this many sync intervals unless its holder renews it
LOCK_SYNCS = 3


def rpc(method: str, *params: object) -> object:
    """Run a Kamailio RPC in this process (jsonrpcs ``exec``); returns its result.

    Raises:
        RuntimeError: the RPC answered an error (its code and message, never its parameters).
    """
    KSR.jsonrpcs.exec(json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}))
    body = pv("$jsonrpl(body)")
    answer = json.loads(body) if body else {}
    if "error" in answer:
        error = answer["error"]
        raise RuntimeError(f"{method}: {error.get('code')} {error.get('message')}")
    return answer.get("result")


def sync_registrations(w: Worker) -> None:
    """Add and remove ``uac`` registrations so they match the registration trunks, then publish
    every trunk's registration state (TTL three sync intervals, at least 60 s).

    Raises:
        StoreUnavailable: redis did not answer.
        RuntimeError: an RPC failed.
    """
    store = w.open_store()
    topology = store.current_topology()
    creds = {}
    for trunk in topology.trunks.values():
        if trunk.register is not None:
            found = store.credentials(trunk.name)
            if found is not None:
                creds[trunk.name] = found
    want, problems = registration.wanted(topology.trunks.values(), creds, dict(w.settings.reg_contacts),
                                         (w.settings.sip_sockets or {}).get(netsides.CARRIER))
    # a nodes=one trunk registers on the node holding its lock only; the others stand by and take
    # over when the lock runs out (its holder died): lock TTL three sync intervals
    standby: dict[str, str] = {}
    for trunk in topology.trunks.values():
        if trunk.register is not None and trunk.register.single and trunk.name in creds:
            holder = reglock.hold(store.client, w.settings.node, trunk.name, LOCK_SYNCS * w.settings.reg_sync_interval_s)
            if holder != w.settings.node:
                standby[trunk.name] = holder
    held_elsewhere = {uuid for uuid, record in want.items() if record.trunk in standby}
    want = {uuid: record for uuid, record in want.items() if record.trunk not in standby}
    dump = rpc("uac.reg_dump") or []
    present = {str(entry.get("l_uuid")): entry for entry in dump if isinstance(entry, dict)}
    have = {uuid: w.registered.get(uuid, "") for uuid in present}
    remove, add = registration.sync_plan(want, have)
    for uuid in remove:
        # Expires: 0 to the registrar (RFC 3261 10.2.2), except for a trunk another node now holds:
        # its binding is that node's (a carrier keeping one binding per account would drop it)
        if uuid not in held_elsewhere:
            try:
                rpc("uac.reg_unregister", "l_uuid", uuid)
            except RuntimeError:
                pass  # not registered: nothing to take back
        rpc("uac.reg_remove", uuid)
        w.registered.pop(uuid, None)
        KSR.info(f"edge: registration {uuid} removed\n")
    for uuid in add:
        record = want[uuid]
        try:
            password = w.secrets().decrypt(record.token)
        except SecretError as exc:
            problems[record.trunk] = str(exc)
            continue
        rpc("uac.reg_add", *record.rpc_params(password))
        w.registered[uuid] = record.fingerprint
        KSR.info(f"edge: registration of trunk {record.trunk} to {record.registrar} added (contact {uuid})\n")
    now = int(time.time())
    states: dict[str, dict[str, str]] = {}
    for uuid, record in want.items():
        if record.trunk in problems:
            continue
        value = KSR.htable.sht_get(cs.REG_REPLY_TABLE, record.to_uri)
        reply = value if isinstance(value, str) else ""
        entry = None if uuid in add else present.get(uuid)
        state = registration.state_of(entry, reply, now, w.settings.reg_timer_interval_s)
        state.update(trunk=record.trunk, registrar=record.registrar, contact=f"sip:{uuid}@{record.contact_addr}",
                     addresses=",".join(_resolve(record.registrar.rsplit(":", 1)[0])))
        states[record.trunk] = state
    for trunk, holder in standby.items():
        states[trunk] = {"trunk": trunk, "state": "standby", "code": "", "reason": f"held by node {holder or '?'}",
                         "expires_at": "", "next_refresh": "", "updated": str(now)}
    for trunk, problem in problems.items():
        states[trunk] = {"trunk": trunk, "state": "failed", "code": "", "reason": problem, "expires_at": "",
                         "next_refresh": "", "updated": str(now)}
    store.publish_registrations(states, ttl_s=max(60, 3 * w.settings.reg_sync_interval_s))


def _resolve(host: str) -> list[str]:
    """Addresses of a registrar given by DNS name ([] for an IP literal or when resolution fails);
    runs in the registration timer process only, never on the call path."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return []
    except ValueError:
        pass
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)})
    except OSError:
        return []
