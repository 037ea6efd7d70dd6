"""Digest authentication both ways and write-only secrets, against the running edge.

Inbound: a PBX trunk authenticates with digest from an address in no allowlist; wrong
credentials are refused and a password cracker (SIPVicious svcrack) gets banned.
Outbound: a carrier that answers 401 gets the trunk's credentials once.
Secrets: the stored password appears in no CLI output, log line, or redis value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from routing.tables import admin, keys
from routing.tables.model import AuthMode, Direction, Gateway, Trunk
from tests.sipp import reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, NET, Edge

PBX_IP = f"{NET}.31"
CRACKER_IP = f"{NET}.95"
PASSWORD = "s3cret-Pa55-unique-7731"


def provision_pbx(edge: Edge, auth: AuthMode = AuthMode.DIGEST, cidrs: tuple[str, ...] = ()) -> None:
    admin.put_trunk(edge.redis, Trunk("pbx", Direction.BOTH, cidrs=cidrs, auth=auth))
    admin.set_trunk_password(edge.redis, edge.secret_box(), "pbx", "pbx-user", PASSWORD)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "pbx", "bot")


def pbx_call(edge: Edge, password: str, source: str = PBX_IP, name: str = "pbx",
             check: bool = True) -> list[tuple[int, str]]:
    caller = uac(edge.workdir / name, source, 5070, edge.sip, DID, scenario="uac_auth.xml",
                 extra=["-au", "pbx-user", "-ap", password])
    status = caller.wait()
    assert status == 0 or not check, caller.output()
    return caller.received_status()


def test_pbx_authenticates_with_digest_from_any_address(clean_edge: Edge) -> None:
    edge = clean_edge
    provision_pbx(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    statuses = pbx_call(edge, PASSWORD)
    assert (407, "Proxy Authentication Required") in statuses
    assert (200, "OK") in statuses
    invite = agent.received_requests("INVITE")[0]
    assert "X-Edge-Trunk: pbx" in invite
    assert "Proxy-Authorization" not in invite  # credentials are consumed, never forwarded


def test_wrong_password_is_refused_then_the_source_is_banned(clean_edge: Edge) -> None:
    edge = clean_edge
    provision_pbx(edge)
    first = pbx_call(edge, "wrong", source=CRACKER_IP, name="w0")
    assert (403, "Authentication Failed") in first
    for attempt in range(1, 5):  # the 5th failure bans: that attempt gets silence, so no exit status is asked
        uac(edge.workdir / f"w{attempt}", CRACKER_IP, 5070, edge.sip, DID, scenario="uac_auth.xml",
            extra=["-au", "pbx-user", "-ap", "wrong", "-timeout", "3"]).wait()
    wait_until(lambda: f"ban {CRACKER_IP} reason=auth" in edge.log(), what="source banned after 5 failures")
    assert edge.call_records() == []


def test_svcrack_is_banned_and_finds_no_password(clean_edge: Edge) -> None:
    edge = clean_edge
    provision_pbx(edge)
    crack = subprocess.run(
        [str(Path(sys.executable).parent / "sipvicious_svcrack"), "-u", "pbx-user", "-r", "1000-1200",
         "-b", CRACKER_IP, "-p", str(edge.port), edge.settings.sip_target[0]],
        capture_output=True, text=True, timeout=180,
    )
    wait_until(lambda: f"ban {CRACKER_IP} reason=auth" in edge.log(), what="cracker banned")
    assert PASSWORD not in crack.stdout
    assert "| pbx-user" not in crack.stdout  # no password was cracked
    assert edge.call_records() == []


def test_both_mode_needs_source_and_credentials(clean_edge: Edge) -> None:
    edge = clean_edge
    provision_pbx(edge, auth=AuthMode.BOTH, cidrs=(f"{PBX_IP}/32",))
    # right credentials from an unlisted address: nobody there
    outsider = uac(edge.workdir / "outsider", CRACKER_IP, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    outsider.wait()
    assert outsider.final_status() == [(403, "Source Not Allowed")]
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    statuses = pbx_call(edge, PASSWORD)
    assert (407, "Proxy Authentication Required") in statuses and (200, "OK") in statuses
    agent.stop()


def test_edge_answers_carrier_challenge_with_trunk_credentials(clean_edge: Edge) -> None:
    edge = clean_edge
    admin.put_trunk(edge.redis, Trunk("carrier-a", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(CARRIER_A, 5080),)))
    admin.set_trunk_password(edge.redis, edge.secret_box(), "carrier-a", "acct-991", PASSWORD)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.route("+44", "carrier-a", "0.0100")
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_challenge.xml", rtp_echo=False,
                  extra=["-key", "authusername", "acct-991", "-key", "authpassword", PASSWORD])
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071838750", scenario=reject_uac_scenario(edge.workdir))
    assert agent.wait() == 0, agent.output()
    assert agent.final_status() == [(200, "OK")]
    assert carrier.wait() == 0, carrier.output()
    assert "credentials valid: true" in carrier.logs()
    assert 'username="acct-991"' in carrier.received_requests("INVITE")[1]


def test_password_is_write_only(clean_edge: Edge) -> None:
    edge = clean_edge
    settings = Path(edge.settings.run_dir).parent / "settings.yaml"
    edgectl = str(Path(sys.executable).parent / "edgectl")
    run = lambda *args, stdin=None: subprocess.run(  # noqa: E731
        [edgectl, "--settings", str(settings), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert run("trunk", "add", "pbx", "--auth", "digest").returncode == 0
    done = run("trunk", "set-password", "pbx", "--username", "pbx-user", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    outputs = [done.stdout + done.stderr]
    for args in (("trunk", "show", "pbx", "--json"), ("trunk", "show", "pbx"), ("trunk", "list", "--json"),
                 ("trunk", "list"), ("calls", "--json"), ("status", "--json")):
        result = run(*args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    shown = json.loads(run("trunk", "show", "pbx", "--json").stdout)
    assert shown["auth_username"] == "pbx-user" and shown["password"] == "set"
    # a call that authenticates exercises the decrypting path: it must not log the password either
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "pbx", "bot")
    assert (503, "Agent Unreachable") in pbx_call(edge, PASSWORD, check=False)  # authenticated, nobody answers
    assert (403, "Authentication Failed") in pbx_call(edge, "wrong-" + PASSWORD[:4], name="pbx-wrong")
    outputs.append(edge.log())
    stored = [str(edge.redis.dump(key)) for key in edge.redis.scan_iter("*")]
    stored += [str(edge.redis.hgetall(key)) for key in edge.redis.scan_iter("*") if edge.redis.type(key) == "hash"]
    for text in outputs + stored:
        assert PASSWORD not in text
    # and what is stored decrypts back with the key outside redis
    token = edge.redis.hget(keys.trunk_auth("pbx"), "password")
    assert edge.secret_box().decrypt(token) == PASSWORD
