"""Reads of the routing tables and atomic concurrency leases, over redis.

The call path talks to redis only through :class:`RedisStore`; the pure
routing stages depend on the :class:`Store` protocol so tests can pass a fake.

Round trips per initial INVITE: one for the DID or the route prefixes (which
also reads ``edge:version``) and one Lua call per admission; an origination
call to a DID this worker read since its last topology read makes only the
admission's (which then reads ``edge:version``).  The trunk/agent topology (two
more round trips and the parsing of every trunk and agent) is cached per worker
process.

Cache contract (what may be cached, and how fresh it is):

* Only the **topology** and the **DIDs read under it** are cached: the index
  sets ``edge:trunks`` / ``edge:agents``, each trunk's and agent's own keys
  (hash, CIDRs, gateways, URIs) and ``edge:did:*`` hashes found.  These change
  only through ``edgectl``/:mod:`routing.tables.admin`, which increments
  ``edge:version`` in the same transaction as every write.  A cached DID is
  used only with the topology copy it was read under, and dropped with it.
* A call routed on a cached DID reads ``edge:version`` in the same write as its
  admission script (:meth:`RedisStore.acquire` ``confirm``); when it moved, the
  slots just taken are released and :class:`StaleTopology` raised (below).
* A decision never rests on a cached topology that redis has moved past: the
  DID and route reads fetch ``edge:version`` in their own pipeline, and
  :meth:`RedisStore.confirm` fetches it on the paths that decide without them
  (refusals by source, digest challenges, transfers, REGISTER).  When it moved,
  the cache is dropped and :class:`StaleTopology` raised, so
  :func:`routing.call.pipeline.route_initial_invite` routes the request once more on a
  fresh read.  An ``edgectl`` write therefore applies to the very next call.
* A hand edit of a trunk, agent or DID with ``redis-cli`` that does not
  ``INCR edge:version`` applies within :data:`TOPOLOGY_MAX_AGE_S` (1 s): the
  cache is never reused for longer.
* Everything else is read per call and must stay so: DIDs not found, routes, digest
  credentials, leases and CPS buckets, and any **per-call state** (gateway
  up/down from OPTIONS probes, spend caps, registrations).  Such state must not
  be put into :class:`Topology`; read it in the DID/route pipeline or in the
  admission script, where it costs no extra round trip.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol, Sequence

import redis
from routing.errors import EdgeError
from routing.tables import keys
from routing.tables.connection import connect, run_script, send  # noqa: F401 - run_script: imported from here too
from routing.tables.admission import Admission, Lease
from routing.tables.model import Did, RouteEntry
from routing.tables.topology import Topology, read_topology

__all__ = ["Topology", "Lease", "Admission", "Store", "RedisStore", "StoreUnavailable", "StaleTopology",
           "TOPOLOGY_MAX_AGE_S", "DID_CACHE_MAX", "connect", "route_prefixes", "run_script", "run_scripts"]


class StoreUnavailable(EdgeError, RuntimeError):
    """redis could not be reached or did not answer within the socket timeout."""


class StaleTopology(EdgeError):
    """``edge:version`` moved while a request was routed on this worker's cached topology;
    the cache has been dropped: route the request once more."""


#: Longest a worker reuses its cached topology without re-reading it (s).  ``edgectl`` writes
#: bump ``edge:version`` and apply to the next call; a hand edit that does not bump it applies
#: within this time.
TOPOLOGY_MAX_AGE_S = 1.0


class Store(Protocol):
    """What routing decisions need from the routing tables."""

    def topology(self) -> Topology: ...

    def confirm(self) -> None: ...

    def current_topology(self) -> Topology: ...

    def did(self, number: str) -> Did | None: ...

    def routes(self, number: str) -> list[RouteEntry]: ...

    def route_lookup(
        self, number: str, spend_of: Sequence[str] = (), account: str = ""
    ) -> tuple[list[RouteEntry], frozenset[str], dict[str, int]]: ...

    def credentials(self, trunk: str) -> tuple[str, str] | None: ...

    def trunk_of_user(self, username: str) -> str | None: ...

    def registrar_addresses(self, trunk: str) -> list[str]: ...

    def acquire(
        self,
        call_id: str,
        leases: Sequence[Lease],
        ttl_s: int,
        release: Sequence[str] = (),
        facts: dict[str, str] | None = None,
        confirm: bool = False,
    ) -> Admission: ...

    def release(self, call_id: str, fence_s: int = 0) -> int: ...

    def finish(self, call_id: str) -> dict[str, str]: ...

    def heartbeat(self, ttl_s: int) -> None: ...
    def update_call(self, call_id: str, fields: dict[str, str], extend_s: int = 0) -> bool: ...
    def update_calls(self, calls: Sequence[tuple[str, dict[str, str]]], extend_s: int = 0) -> list[bool]: ...


def route_prefixes(number: str) -> list[str]:
    """Candidate route prefixes of an E.164 number, longest first, ending with ``"+"``."""
    return [number[:i] for i in range(len(number), 0, -1)]


def run_scripts(script: redis.commands.core.Script, commands: Sequence[tuple]) -> list[object]:
    """``EVALSHA`` ``commands`` (each ``("EVALSHA", sha, numkeys, *keys, *args)``) of ``script`` in one
    write (:func:`routing.tables.connection.send`); their replies in order.  A server that lost the
    script (``NOSCRIPT``: redis restarted) gets it through redis-py's script object, which loads it.

    Raises:
        StoreUnavailable: redis unreachable or slow.
        redis.ResponseError: a script failed.
    """
    if not commands:
        return []
    try:
        replies = []
        for command, reply in zip(commands, send(script.registered_client, *commands)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                n = int(command[2])
                reply = script(keys=command[3:3 + n], args=command[3 + n:])
            elif isinstance(reply, redis.ResponseError):
                raise reply
            replies.append(reply)
        return replies
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc


#: DIDs a worker keeps between topology reads at most (the cache lives ``TOPOLOGY_MAX_AGE_S``)
DID_CACHE_MAX = 10_000

#: a node's heartbeat (``edge:node:{node}``) lives this long (s); its call clock renews it every second
HEARTBEAT_TTL_S = 10


class RedisStore:
    """:class:`Store` over a redis client; every error becomes :class:`StoreUnavailable`
    when redis cannot be reached, or propagates when the data itself is wrong.

    Args:
        client: a client from :func:`connect` (``decode_responses=True``).
        node: this edge node's id, prefixed to lease members so calls of several
            nodes sharing one redis never collide.
        strict_wait_ms: 0, or how long (ms) an admission and an answer's lease extension wait for
            one replica to acknowledge them (``WAIT 1 <ms>``, https://redis.io/docs/latest/commands/wait/)
            so a Sentinel failover cannot lose them: an admission no replica acknowledged in time is
            released and refused as :class:`StoreUnavailable` (settings ``redis.strict_admission``).
    """

    def __init__(self, client: redis.Redis, node: str, strict_wait_ms: int = 0) -> None:
        self.client = client
        self.node = node
        self.strict_wait_ms = strict_wait_ms
        lua = Path(__file__).resolve().parent / "lua"
        self._lease = client.register_script((lua / "lease.lua").read_text())
        self._release = client.register_script((lua / "release.lua").read_text())
        self._dtmf = client.register_script((lua / "dtmf.lua").read_text())
        self._media = client.register_script((lua / "media.lua").read_text())
        self._finish = client.register_script((lua / "finish.lua").read_text())
        self._update = client.register_script((lua / "call_update.lua").read_text())
        self._topology: Topology | None = None
        self._version: str | None = None
        self._loaded_at = 0.0
        #: the topology last returned by topology() is a reused copy not yet compared with edge:version
        self._unconfirmed = False
        #: DIDs read from redis under ``_version`` (dropped with the topology copy), and whether this
        #: request took one from here: its admission then reads edge:version (acquire ``confirm``)
        self._dids: dict[str, Did] = {}
        self._did_cached = False

    def _check_version(self, version: str | None) -> None:
        """Compare ``edge:version`` read by this request with the cached topology's.

        Raises:
            StaleTopology: it moved and the request was routed on a reused, unconfirmed copy.
        """
        reused, self._unconfirmed = self._unconfirmed, False
        if version == self._version:
            return
        self._topology, self._dids = None, {}  # the next topology() reads redis again
        if reused:
            raise StaleTopology(f"{keys.VERSION} {self._version} -> {version}")

    def confirm(self) -> None:
        """Make sure the topology last returned by :meth:`topology` is current: one round trip
        when it was a reused copy not yet confirmed in this request, none otherwise.

        Raises:
            StaleTopology: ``edge:version`` moved since it was read; the cache is dropped.
            StoreUnavailable: redis unreachable or slow.
        """
        self._did_cached = False  # confirmed here, not at the admission
        if not self._unconfirmed:
            return
        try:
            version = self.client.get(keys.VERSION)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._check_version(version)

    def current_topology(self) -> Topology:
        """:meth:`topology`, confirmed against ``edge:version`` (for the rare paths that decide
        without a DID or route read: transfers, redirects, REGISTER)."""
        topology = self.topology()
        try:
            self.confirm()
        except StaleTopology:
            topology = self.topology()
        return topology

    def topology(self) -> Topology:
        """Every trunk and agent: this worker's cached copy while it is younger than
        :data:`TOPOLOGY_MAX_AGE_S`, else read from redis (two round trips, with ``edge:version``).

        A reused copy is unconfirmed until the request's DID/route read or :meth:`confirm`
        compares ``edge:version`` (see the module's cache contract).

        Raises:
            StoreUnavailable: redis unreachable or slow.
            DataError: a malformed trunk or agent.
        """
        self._did_cached = False
        if self._topology is not None and time.monotonic() - self._loaded_at < TOPOLOGY_MAX_AGE_S:
            self._unconfirmed = True
            return self._topology
        self._topology, self._unconfirmed, self._dids = None, False, {}
        loaded_at = time.monotonic()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.smembers(keys.TRUNKS)
            pipe.smembers(keys.AGENTS)
            pipe.get(keys.VERSION)
            pipe.smembers(keys.AGENTS_DOWN)
            pipe.smembers(keys.ACCOUNTS)
            trunk_names, agent_names, version, agents_down, accounts = pipe.execute()
            topology = replace(read_topology(self.client, sorted(trunk_names), sorted(agent_names), sorted(accounts)),
                               agents_down=frozenset(agents_down))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._topology, self._version, self._loaded_at = topology, version, loaded_at
        return topology

    def did(self, number: str) -> Did | None:
        """Look up one DID (E.164 with ``+``); None when it is not provisioned.  One round trip,
        which also checks ``edge:version`` against the cached topology; none when the topology is a
        reused copy not yet confirmed and the DID was read under its version (the module's cache
        contract): the call's admission (:meth:`acquire` ``confirm``) then reads the version.

        Raises:
            StaleTopology: the topology this request was routed on is out of date.
            StoreUnavailable: redis unreachable or slow.
        """
        if self._unconfirmed and (cached := self._dids.get(number)) is not None:
            self._did_cached = True
            return cached
        try:
            flat, version = send(self.client, ("HGETALL", keys.did(number)), ("GET", keys.VERSION))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        for reply in (flat, version):
            if isinstance(reply, redis.ResponseError):
                raise reply
        self._check_version(version)
        if not flat:
            return None
        did = Did.from_redis(number, dict(zip(flat[::2], flat[1::2])))
        if self._topology is not None and len(self._dids) < DID_CACHE_MAX:
            self._dids[number] = did  # read under _version: reused until the topology copy is dropped
        return did

    def credentials(self, trunk: str) -> tuple[str, str] | None:
        """A trunk's digest (username, encrypted password token), or None when it has none."""
        try:
            fields = self.client.hgetall(keys.trunk_auth(trunk))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not fields.get("username") or not fields.get("password"):
            return None
        return fields["username"], fields["password"]

    def registrar_addresses(self, trunk: str) -> list[str]:
        """Addresses this node resolved its registrar's DNS name of ``trunk`` to (published by the
        registration timer in ``edge:reg:{trunk}:{node}``, field ``addresses``); [] when none."""
        try:
            text = self.client.hget(keys.registration(trunk, self.node), "addresses") or ""
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [a for a in text.split(",") if a]

    def publish_registrations(self, states: dict[str, dict[str, str]], ttl_s: int) -> None:
        """Write each trunk's registration state on this node (``edge:reg:{trunk}:{node}``, expiring
        after ``ttl_s`` unless refreshed) and delete the states of trunks no longer registering here.

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        try:
            stale = []
            for key in self.client.scan_iter(match=keys.registration_pattern(), count=500):
                trunk, _, node = key.removeprefix(keys.registration("", "")[:-1]).partition(":")
                if node == self.node and trunk not in states:
                    stale.append(key)
            pipe = self.client.pipeline(transaction=False)
            for key in stale:
                pipe.delete(key)
            for trunk, fields in states.items():
                key = keys.registration(trunk, self.node)
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl_s)
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def trunk_of_user(self, username: str) -> str | None:
        """The trunk whose digest username is ``username``, or None."""
        try:
            return self.client.hget(keys.AUTH_USERS, username) or None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def routes(self, number: str) -> list[RouteEntry]:
        """Route entries of the longest prefix of ``number`` that has any (one round trip, which
        also checks ``edge:version`` against the cached topology).

        Raises:
            StaleTopology: the topology this request was routed on is out of date.
            StoreUnavailable: redis unreachable or slow.
        """
        prefixes = route_prefixes(number)
        try:
            pipe = self.client.pipeline(transaction=False)
            for prefix in prefixes:
                pipe.hgetall(keys.route(prefix))
            pipe.get(keys.VERSION)
            *rows, version = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._check_version(version)
        for prefix, fields in zip(prefixes, rows):
            if fields:
                return [RouteEntry.from_redis(prefix, trunk, value) for trunk, value in fields.items()]
        return []

    def route_lookup(
        self, number: str, spend_of: Sequence[str] = (), account: str = ""
    ) -> tuple[list[RouteEntry], frozenset[str], dict[str, int]]:
        """:meth:`routes` plus the gateways marked down (``{trunk}/{host:port}``, written by
        ``routing/monitor/prober.py``) and today's spend of each trunk in ``spend_of``
        (micro-units, UTC day of this host's clock; spend guardrails), and of ``account`` when
        named (under the key ``account:{name}``: trunk names hold no ``:``), all in the same round
        trip, so a health change or a reached spend cap applies to the next call; the same round
        trip checks ``edge:version`` against the cached topology.

        Raises:
            StaleTopology: the topology this request was routed on is out of date.
            StoreUnavailable: redis unreachable or slow.
        """
        prefixes = route_prefixes(number)
        day = time.strftime("%Y%m%d", time.gmtime())
        try:
            pipe = self.client.pipeline(transaction=False)
            for prefix in prefixes:
                pipe.hgetall(keys.route(prefix))
            pipe.smembers(keys.GATEWAYS_DOWN)
            for trunk in spend_of:
                pipe.get(keys.spend(trunk, day))
            if account:
                pipe.get(keys.account_spend(account, day))
            pipe.get(keys.VERSION)
            *rows, version = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._check_version(version)
        down = frozenset(rows[len(prefixes)])
        spent = {trunk: int(value or 0) for trunk, value in zip(spend_of, rows[len(prefixes) + 1 :])}
        if account:
            spent[f"account:{account}"] = int(rows[-1] or 0)
        for prefix, fields in zip(prefixes, rows[: len(prefixes)]):
            if fields:
                return [RouteEntry.from_redis(prefix, trunk, value) for trunk, value in fields.items()], down, spent
        return [], down, spent

    def heartbeat(self, ttl_s: int) -> None:
        """Say this node lives for ``ttl_s`` more seconds (``edge:node:{node}``, one SET with EX):
        the other nodes reap the calls of a node whose heartbeat is gone (:mod:`routing.monitor.nodeloss`).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        try:
            self.client.set(keys.node(self.node), str(int(time.time())), ex=ttl_s)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def finish(self, call_id: str, media: dict[str, str] | None = None, keep_s: int = 0) -> dict[str, str]:
        """:meth:`finish_many` of one call: its call hash as it was, empty when already released."""
        return self.finish_many([(call_id, media or {})], keep_s)[0]

    def finish_many(self, calls: Sequence[tuple[str, dict[str, str]]], keep_s: int = 0) -> list[dict[str, str]]:
        """Release each ``(call_id, media)`` like :meth:`release` and return its call hash as it was
        (facts and what the media work stored; empty when already released), in one write (the
        calls ended since the last tick of :func:`routing.kamailio.dialogs.drain_ended`).  ``media``
        (the final reading, :func:`routing.call.quality.summary`) is stored first, as
        :meth:`record_media` would (``keep_s``: how long ``edge:media:{node}:{call-id}`` is kept, s).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        commands = [("EVALSHA", self._finish.sha, 2, keys.call(self.node, call_id), keys.media(self.node, call_id),
                     keys.lease_member(self.node, call_id), keep_s, *(x for pair in media.items() for x in pair))
                    for call_id, media in calls]
        return [dict(zip(flat[::2], flat[1::2])) for flat in run_scripts(self._finish, commands)]

    def update_call(self, call_id: str, fields: dict[str, str], extend_s: int = 0) -> bool:
        """:meth:`update_calls` of one call."""
        return self.update_calls([(call_id, fields)], extend_s)[0] if fields or extend_s > 0 else False

    def update_calls(self, calls: Sequence[tuple[str, dict[str, str]]], extend_s: int = 0) -> list[bool]:
        """Add each ``(call_id, fields)``'s fields to its live hash (answer time, codecs) and, when
        ``extend_s`` > 0, make its leases and hash last ``extend_s`` seconds from now (the answer
        extends the admission's short lease to the longest a call may last, lua/call_update.lua), in
        one write; per call False when it has been released already (nothing re-created or re-joined).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        commands = [("EVALSHA", self._update.sha, 1, keys.call(self.node, call_id), keys.lease_member(self.node, call_id),
                     int(extend_s), *(x for pair in fields.items() for x in pair)) for call_id, fields in calls]
        done = [bool(reply) for reply in run_scripts(self._update, commands)]
        if any(done) and extend_s > 0 and self.strict_wait_ms:
            try:
                self._replicated(f"the lease extension of {len(done)} calls")  # answered calls keep their slots
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise StoreUnavailable(str(exc)) from exc
        return done

    def _replicated(self, what: str) -> None:
        """``WAIT 1 strict_wait_ms``: block until one replica acknowledged this connection's writes.

        Raises:
            StoreUnavailable: no replica acknowledged within ``strict_wait_ms``.
            redis.ConnectionError, redis.TimeoutError: redis unreachable or slow.
        """
        acked = int(self.client.execute_command("WAIT", 1, self.strict_wait_ms))
        if acked < 1:
            raise StoreUnavailable(f"{what} was not acknowledged by a replica within {self.strict_wait_ms} ms")

    def acquire(
        self,
        call_id: str,
        leases: Sequence[Lease],
        ttl_s: int,
        release: Sequence[str] = (),
        facts: dict[str, str] | None = None,
        confirm: bool = False,
    ) -> Admission:
        """Atomically leave ``release`` and join every lease, or join none.

        Args:
            call_id: the SIP Call-ID.
            leases: slots to take.
            ttl_s: lease lifetime (s): the admission's, as long as the call may ring
                (``RuntimeSettings.admission_ttl_s``); :meth:`update_call` extends it on the answer.
            release: lease keys to leave first (moving to another trunk on failover).
            facts: fields stored with the call record (trunk, agent, direction...).
            confirm: the admission of a routing decision: when this request's DID came from the
                worker's cache (:meth:`did`), ``edge:version`` is read in the same write, after the
                script, and a decision made on an out-of-date copy is undone.

        Raises:
            StaleTopology: ``confirm`` and the routing tables moved since the cached DID and topology
                were read: the slots just joined are released, the caches dropped; route again.
            StoreUnavailable: redis unreachable or slow (callers fail closed), or the call is
                fenced by :meth:`release` after its earlier admission was abandoned.
        """
        argv: list[str | int | float] = [keys.lease_member(self.node, call_id), int(ttl_s), len(release)]
        for lease in leases:
            argv += [-1 if lease.limit is None else lease.limit, lease.cps or 0, lease.bucket or ""]
        for name, value in (facts or {}).items():
            argv += [name, value]
        script_keys = [keys.call(self.node, call_id), *release, *(lease.key for lease in leases)]
        try:
            if confirm and self._did_cached:
                self._did_cached = False
                ok, index, count, *wait = self._admit_confirmed(call_id, script_keys, argv)
            else:
                ok, index, count, *wait = run_script(self._lease, script_keys, argv)
            if ok and self.strict_wait_ms:
                # a slot a failover could lose is never used: the caller releases it (with a fence) and answers 503
                self._replicated(f"the admission of call {call_id}")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        if ok:
            return Admission(admitted=True)
        if int(index) == 0:
            raise StoreUnavailable(f"call {call_id} is fenced: an earlier admission of it was abandoned")
        return Admission(admitted=False, full=leases[int(index) - 1], count=int(count), wait_ms=int(wait[0]) if wait else 0)

    def _admit_confirmed(self, call_id: str, script_keys: list[str], argv: list) -> list:
        """``lease.lua`` and ``GET edge:version`` in one write (:meth:`acquire` ``confirm``): the
        script's reply; a version that moved since the cached DID was read releases what the script
        joined and raises :class:`StaleTopology`.

        Raises:
            StaleTopology, redis.ConnectionError, redis.TimeoutError.
        """
        reply, version = send(self.client, ("EVALSHA", self._lease.sha, len(script_keys), *script_keys, *argv),
                              ("GET", keys.VERSION))
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = self._lease(keys=script_keys, args=argv)
        elif isinstance(reply, redis.ResponseError):
            raise reply
        self._unconfirmed = False
        if version == self._version:
            return reply
        self._topology, self._dids = None, {}
        if reply[0]:
            self.release(call_id)
        raise StaleTopology(f"{keys.VERSION} {self._version} -> {version} (checked at the admission)")

    def keep_trace(self, call_id: str, text: str, ttl_s: int) -> None:
        """Store a refused call's record (``edge:trace:{call-id}``, JSON) for ``ttl_s`` seconds (one SET).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        try:
            self.client.set(keys.trace(call_id), text, ex=ttl_s)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def release(self, call_id: str, fence_s: int = 0) -> int:
        """Leave every lease the call holds; returns how many it held. Idempotent.

        Args:
            call_id: the SIP Call-ID.
            fence_s: after a failed :meth:`acquire` (redis hung), keep a fence for this many
                seconds (s) so that admission, if redis runs it late, joins nothing.

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        try:
            return int(run_script(self._release, [keys.call(self.node, call_id)],
                                  [keys.lease_member(self.node, call_id), int(fence_s)]))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def record_media(self, call_id: str, fields: dict[str, str], keep_s: int = 0) -> bool:
        """Write a call's media quality (``media_*`` fields, :func:`routing.call.quality.summary`) into its
        live call record (only while it exists) and, when ``keep_s`` > 0, into
        ``edge:media:{node}:{call-id}`` kept ``keep_s`` seconds after the call.

        Returns:
            True when the live record was updated.

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        args: list[str | int] = [keep_s]
        for name, value in fields.items():
            args += [name, value]
        try:
            return bool(self._media(keys=[keys.call(self.node, call_id), keys.media(self.node, call_id)], args=args))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def record_dtmf(self, call_id: str, entry: str) -> bool:
        """Append a DTMF digit entry (``caller:5:info``, :func:`routing.call.dtmf.record_entry`) to the
        call record's ``dtmf`` field, comma-separated in arrival order; False when the call has no
        record (already released).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        try:
            return bool(self._dtmf(keys=[keys.call(self.node, call_id)], args=[entry]))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
