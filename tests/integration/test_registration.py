"""Registration trunks against the running edge: the edge REGISTERs to a SIPp registrar that
challenges (401, then 200 with Expires), refreshes before expiry, publishes the state that
``edgectl trunk show`` prints, reports a refused registration with its code, and routes the
registrar's inbound call to the registered contact to the trunk, from outside its CIDRs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from routing.tables import admin, keys
from routing.tables.model import Direction, Registration, Trunk
from routing.ops.secrets import SecretBox, create_key
from tests.sipp import uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, CARRIER_C, DID, STRANGER, Edge

PASSWORD = "reg-Pa55-unique-4417"
CONTACT = "edge5f1c2a9b7d3e4410"


def state(edge: Edge, trunk: str) -> dict[str, str]:
    return edge.redis.hgetall(keys.registration(trunk, edge.settings.node))


def provision(edge: Edge) -> None:
    create_key(edge.settings.secret_key_path)
    box = SecretBox(edge.settings.secret_key_path)
    # the carrier's signalling address is in its CIDRs; its registrar (CARRIER_C) is not
    admin.put_trunk(edge.redis, Trunk("regcarrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      register=Registration(f"{CARRIER_C}:5080", CONTACT, expires_s=60)))
    admin.set_trunk_password(edge.redis, box, "regcarrier", "acct-4417", PASSWORD)
    admin.put_trunk(edge.redis, Trunk("refusing", Direction.BOTH,
                                      register=Registration(f"{CARRIER_B}:5080", "edgeffff000011112222")))
    admin.set_trunk_password(edge.redis, box, "refusing", "acct-0001", "other-password-1")
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "regcarrier", "bot")


def test_register_refresh_state_and_inbound_match(clean_edge: Edge) -> None:
    edge = clean_edge
    registrar = uas(edge.workdir / "registrar", CARRIER_C, 5080, scenario="uas_registrar.xml", calls=2,
                    rtp_echo=False, extra=["-key", "authusername", "acct-4417", "-key", "authpassword", PASSWORD,
                                           "-key", "expires", "10"])
    refusing = uas(edge.workdir / "refusing", CARRIER_B, 5080, scenario="uas_register_reject.xml", calls=100,
                   rtp_echo=False)
    provision(edge)

    first = wait_until(lambda: (s := state(edge, "regcarrier")).get("state") == "registered" and s,
                       timeout=20, what="registered")
    assert first["code"] == "200" and first["contact"].startswith(f"sip:{CONTACT}@")
    expires_at = int(first["expires_at"])
    assert time.time() < expires_at <= time.time() + 11  # the registrar's Expires: 10 wins over the 60 asked
    assert int(first["next_refresh"]) < expires_at
    # the refresh comes before the first registration expires
    refreshed = wait_until(lambda: int(state(edge, "regcarrier").get("expires_at") or 0) > expires_at,
                           timeout=15, what="registration refreshed")
    assert refreshed and time.time() < expires_at + 1
    assert registrar.wait(timeout=10) == 0, registrar.output()
    registers = registrar.received_requests("REGISTER")
    assert len(registers) == 4  # (401, 200) twice
    assert all(f"Contact: <sip:{CONTACT}@" in r for r in registers)
    assert 'username="acct-4417"' in registers[1]
    assert registrar.logs().count("credentials valid: true") == 2

    failed = wait_until(lambda: (s := state(edge, "refusing")).get("code") == "403" and s, timeout=20,
                        what="refused registration published")
    assert failed["state"] == "failed" and failed["reason"] == "Forbidden" and failed["next_refresh"]

    # edgectl trunk show prints the state, never the password
    settings = Path(edge.settings.run_dir).parent / "settings.yaml"
    edgectl = [str(Path(sys.executable).parent / "edgectl"), "--settings", str(settings)]
    shown = subprocess.run(edgectl + ["trunk", "show", "refusing"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert "failed (403 Forbidden)" in shown.stdout and "next attempt" in shown.stdout
    as_json = json.loads(subprocess.run(edgectl + ["trunk", "show", "regcarrier", "--json"], capture_output=True,
                                        text=True, timeout=30).stdout)
    assert as_json["register"]["contact_user"] == CONTACT
    assert as_json["registration"][0]["state"] in ("registered", "registering")

    # the registrar's side calls the registered contact: matched through the registration
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    call = uac(edge.workdir / "inbound", CARRIER_C, 5071, edge.sip, DID, scenario="uac_to_contact.xml",
               hold_ms=200, extra=["-key", "contact", CONTACT])
    assert call.wait() == 0, call.output()
    invite = agent.received_requests("INVITE")[0]
    assert re.search(rf"^INVITE sip:\{DID}@", invite, re.M)  # the DID from To became the R-URI user
    assert "X-Edge-Trunk: regcarrier" in invite and f"X-Edge-DID: {DID}" in invite
    # the contact alone is not enough: a stranger, or the registrar's address calling another user, is refused
    stranger = uac(edge.workdir / "stranger", STRANGER, 5071, edge.sip, DID, scenario="uac_to_contact.xml",
                   extra=["-key", "contact", CONTACT])
    stranger.wait()
    assert stranger.final_status() == [(403, "Source Not Allowed")]
    other = uac(edge.workdir / "other", CARRIER_C, 5072, edge.sip, DID, scenario="uac_to_contact.xml",
                extra=["-key", "contact", "edge0000000000000000"])
    other.wait()
    assert other.final_status() == [(403, "Source Not Allowed")]

    # removing the trunk removes its registration and its published state
    admin.remove_trunk(edge.redis, "refusing")
    wait_until(lambda: not state(edge, "refusing"), timeout=10, what="state of a removed trunk deleted")
    refusing.stop()
    stored = [str(edge.redis.hgetall(k)) for k in edge.redis.scan_iter("*") if edge.redis.type(k) == "hash"]
    for text in stored + [edge.log(), shown.stdout, json.dumps(as_json)]:
        assert PASSWORD not in text
