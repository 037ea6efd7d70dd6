"""Screening and authentication: sources pike flags (flood bans), digest authentication of trunks
(RFC 3261 section 22; Kamailio auth module), REGISTER from digest trunks, and the trust check of a
source against the trunks' and agents' addresses (topology cached per worker)."""

from __future__ import annotations

import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import metrics
from ..call.acl import classify_source
from ..call.decision import Reason, Reject
from ..tables.model import AuthMode, DataError, Trunk
from ..tables.store import StoreUnavailable, Topology
from . import callstate as cs
from .worker import Worker, count, pv

__all__ = ["flood", "ban", "cached_topology", "trusted", "authenticate", "register", "not_allowed"]

#: sources whose trust is remembered per topology copy before the memo starts over
TRUST_MEMO_SIZE = 4096
TRUST_CACHE_S = 1.0
#: the 405's Allow header (RFC 3261 section 21.4.6)
ALLOW = "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER\r\n"


def flood(w: Worker) -> None:
    """pike flagged the source (flood): ban it unless it is a trunk's or an agent's (then
    :data:`cs.DROP_VAR` is set: the native route drops the message); a redis failure of the
    trust check is noted in :data:`cs.STORE_FAILED_VAR` for the rest of the request route."""
    w.store_failed = False
    src = pv("$si")
    if not trusted(w, src):
        ban(src, "flood")
        KSR.pv.seti(cs.DROP_VAR, 1)
    elif w.store_failed:
        KSR.pv.seti(cs.STORE_FAILED_VAR, 1)
    else:  # the native route asks again in a second at the earliest (the topology cache's age)
        KSR.htable.sht_seti(cs.TRUST_TABLE, src, 1)


def ban(src: str, why: str) -> None:
    """Ban a source address for ``security.ban_time_s`` (the ban htable's autoexpire); the value
    is the reason, which the monitor publishes to every node (routing/monitor/bansync.py)."""
    if KSR.is_myself_srcip():
        return  # never ban the edge's own addresses (local probes, loopback tools)
    KSR.htable.sht_sets(cs.BAN_TABLE, src, why)
    KSR.notice(f"edge: ban {src} reason={why} ua={pv('$ua')!r}\n")


def cached_topology(w: Worker) -> Topology | None:
    """Trunks and agents, cached per worker for ``TRUST_CACHE_S`` (1 s).

    While redis cannot be read the last copy this worker read is kept (a carrier trusted a
    second ago stays trusted during an outage); None when this worker never read one.
    """
    now = time.monotonic()
    if w.topology is None or now - w.topology_at > TRUST_CACHE_S:
        try:
            w.topology = w.open_store().topology()
        except StoreUnavailable:
            w.store_failed = True  # this request does not wait for redis a second time
        except DataError:  # malformed tables do not heal by waiting: trust nobody new
            w.topology = w.topology or Topology(trunks={}, agents={})
        w.topology_at = now
    return w.topology


def trusted(w: Worker, src: str) -> bool:
    """Whether ``src`` belongs to a trunk or agent (cached topology).  When this worker
    cannot tell (redis unreadable and no earlier copy) the source is not banned: a
    carrier must not be locked out for ``ban_time_s`` by a routing-store outage, and
    its requests are answered 503 meanwhile."""
    topology = cached_topology(w)
    if topology is None:
        return True
    if topology is not w.trust_of:  # a new copy: forget the answers of the old one
        w.trust_of, w.trust = topology, {}
    known = w.trust.get(src)
    if known is None:
        if len(w.trust) >= TRUST_MEMO_SIZE:
            w.trust.clear()  # a spray of strangers must not grow it without bound
        known = w.trust[src] = classify_source(src, topology) is not None
    return known


def _digest(w: Worker, password_token: str) -> bool | None:
    """Check the request's credentials against a trunk's password (``pv_auth_check``): True when
    they match, None when a fresh challenge was sent (stale or reused nonce), False otherwise."""
    realm = w.settings.auth_realm
    rc = KSR.auth.pv_auth_check(realm, w.secrets().decrypt(password_token), 0, 0)
    if rc in (-4, -6):  # stale or reused nonce: a fresh challenge, not a failure
        KSR.auth.auth_challenge(realm, 0)
        return None
    return rc >= 0


def authenticate(w: Worker, trunk_name: str | None, topology: Topology) -> Trunk | None:
    """Check the request's digest credentials (RFC 3261 section 22.3; Kamailio auth module: auth_challenge, pv_auth_check).

    Without credentials the request is challenged (407).  Wrong credentials
    get 403 and count toward a ban of the source after
    ``auth_max_failures`` attempts.  Returns the authenticated trunk, or None
    when the request has been answered.
    """
    user = pv("$au")
    if not user:
        KSR.auth.auth_challenge(w.settings.auth_realm, 0)
        return None
    store = w.open_store()
    name = trunk_name or store.trunk_of_user(user)
    trunk = topology.trunks.get(name or "")
    creds = store.credentials(trunk.name) if trunk is not None else None
    if trunk is None or creds is None or creds[0] != user or (trunk_name is None and trunk.auth is not AuthMode.DIGEST):
        _auth_failed(w, user)
        return None
    ok = _digest(w, creds[1])
    if ok is None:
        return None
    if not ok:
        _auth_failed(w, user)
        return None
    KSR.auth.consume_credentials()
    return trunk


def _auth_failed(w: Worker, user: str) -> None:
    src = pv("$si")
    failures = KSR.htable.sht_inc(cs.AUTH_FAIL_TABLE, src)
    if failures < 1:  # no entry yet (sht_inc answers -255): the first failure in the window
        KSR.htable.sht_seti(cs.AUTH_FAIL_TABLE, src, 1)
        failures = 1
    KSR.notice(f"edge: digest failure {failures}/{w.settings.auth_max_failures} src={src} user={user!r}\n")
    if pv("$rm") == "INVITE":
        w.remember(Reject.of(Reason.AUTH_FAILED), "request")
    if failures >= w.settings.auth_max_failures:
        ban(src, "auth")
        return  # silence from now on
    w.reply(Reject.of(Reason.AUTH_FAILED))


def register(w: Worker) -> None:
    """REGISTER: only digest trunks may register (PBXs that register to their provider);
    the registration is accepted (200) but the edge routes by trunk, not by contact.

    Raises:
        StoreUnavailable: redis did not answer (the entry answers 503).
    """
    topology = w.open_store().current_topology()
    if not any(t.auth is not AuthMode.IP for t in topology.trunks.values()):
        not_allowed(w)
        return
    user = pv("$au")
    if not user:
        KSR.auth.auth_challenge(w.settings.auth_realm, 0)
        return
    name = w.open_store().trunk_of_user(user)
    creds = w.open_store().credentials(name) if name else None
    if creds is None or creds[0] != user:
        count(metrics.REGISTRATIONS, metrics.label(name), "refused")
        _auth_failed(w, user)
        return
    ok = _digest(w, creds[1])
    if ok is None:
        return
    if not ok:
        count(metrics.REGISTRATIONS, metrics.label(name), "refused")
        _auth_failed(w, user)
        return
    count(metrics.REGISTRATIONS, metrics.label(name), "accepted")
    expires = pv("$hdr(Expires)") or "3600"
    KSR.hdr.append_to_reply(f"Expires: {expires}\r\n")
    KSR.sl.send_reply(200, "OK")


def not_allowed(w: Worker) -> None:
    """405 with the methods the edge takes (``Allow``)."""
    KSR.hdr.append_to_reply(ALLOW)
    w.reply(Reject.of(Reason.NOT_ALLOWED))
