"""A registration trunk that exactly one node registers (``register ... nodes=one``) on the running
edge: while another node holds its lock (``edge:reglock:{trunk}``, written by the test as that
node's edge would) this node stands by and publishes so; once the holder stops renewing it (it
died), this node takes the lock within a few sync intervals and registers itself."""

from __future__ import annotations

import time

from routing.ops.secrets import SecretBox, create_key
from routing.tables import admin, keys
from routing.tables.model import Direction, Registration, Trunk
from tests.helpers import wait_until
from tests.sipp import uas

from .conftest import CARRIER_A, CARRIER_C, Edge
from .test_registration import PASSWORD, state

CONTACT = "edge0a1b2c3d4e5f6071"
#: a registrar port of its own: test_registration's registrations (to port 5080) are taken back
#: (Expires 0) when its tables are flushed, and must not reach this test's one-call registrar
REGISTRAR_PORT = 5082


def test_one_node_registers_and_another_takes_over_when_its_lock_runs_out(clean_edge: Edge) -> None:
    edge = clean_edge
    edge.redis.set(keys.registration_lock("regcarrier"), "edge-b", ex=8)  # edge-b registers, then dies
    registrar = uas(edge.workdir / "registrar", CARRIER_C, REGISTRAR_PORT, scenario="uas_registrar.xml", calls=1,
                    rtp_echo=False, extra=["-key", "authusername", "acct-4417", "-key", "authpassword", PASSWORD,
                                           "-key", "expires", "60"])
    create_key(edge.settings.secret_key_path)
    admin.put_trunk(edge.redis, Trunk("regcarrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      register=Registration(f"{CARRIER_C}:{REGISTRAR_PORT}", CONTACT, single=True)))
    admin.set_trunk_password(edge.redis, SecretBox(edge.settings.secret_key_path), "regcarrier", "acct-4417", PASSWORD)

    standby = wait_until(lambda: (s := state(edge, "regcarrier")).get("state") == "standby" and s, timeout=10,
                         what="this node standing by")
    assert standby["reason"] == "held by node edge-b"
    lock_ttl = edge.redis.ttl(keys.registration_lock("regcarrier"))
    assert edge.redis.get(keys.registration_lock("regcarrier")) == "edge-b" and lock_ttl > 0
    taken_by = time.monotonic() + lock_ttl
    registered = wait_until(lambda: (s := state(edge, "regcarrier")).get("state") == "registered" and s,
                            timeout=20, what="this node registered after the holder's lock ran out")
    # taken over within the sync intervals of the lock's end (sync every 1 s here)
    assert time.monotonic() - taken_by < 5
    assert registered["contact"].startswith(f"sip:{CONTACT}@")
    assert edge.redis.get(keys.registration_lock("regcarrier")) == edge.settings.node
    # the holder renews its lock: it never runs out while this node lives (TTL 3 sync intervals)
    assert 0 < edge.redis.ttl(keys.registration_lock("regcarrier")) <= 3
    assert registrar.wait(timeout=10) == 0, registrar.output()
    assert len(registrar.received_requests("REGISTER")) == 2  # 401, then 200: one registration, this node's
