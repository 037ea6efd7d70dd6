"""How the carrier receives the caller of a termination call, on the running edge: each trunk's
caller ID shaping (identity header, number format, From user and host, ``user=phone``, display
name) exactly as a SIPp carrier receives the INVITE, and an agent's privacy request (RFC 3323:
an anonymous From, the number in P-Asserted-Identity only).  A shaped From keeps the host the
agent wrote (not its port) unless the trunk sets one."""

from __future__ import annotations

import re

import pytest

from routing.tables import admin
from routing.tables.model import CallerIdShape
from routing.call.numbers import NumberFormat
from tests.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, Edge

CALLER = "+14155550123"
DEST = "+442071838750"


def carrier_invite(edge: Edge, shape: CallerIdShape, extra_headers: str = "",
                   credentials: tuple[str, str] | None = None, **trunk: object) -> str:
    """bot (caller +14155550123, From display "Caller") calls +44 over carrier-a, shaped by
    ``shape`` (with digest ``credentials`` when given); the INVITE carrier-a's gateway receives."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], probe=False, caller_shape=shape, **trunk)
    if credentials is not None:
        admin.set_trunk_password(edge.redis, edge.secret_box(), "carrier-a", *credentials)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], probe=False)
    edge.route("+44", "carrier-a", "0.0100")
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller=CALLER,
                scenario=reject_uac_scenario(edge.workdir, extra_headers=extra_headers))
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    return carrier.received_requests("INVITE")[0]


def header(invite: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:\s*(.*?)\s*$", invite, re.M | re.I)


def test_a_trunk_that_shapes_nothing_gets_the_from_as_the_agent_wrote_it(clean_edge: Edge) -> None:
    invite = carrier_invite(clean_edge, CallerIdShape())
    [from_] = header(invite, "From")
    assert from_.startswith(f'"Caller" <sip:{CALLER}@{AGENT_IP}:5070>'), from_
    assert not header(invite, "P-Asserted-Identity") and not header(invite, "Remote-Party-ID")


def test_pai_without_plus_with_user_phone_and_no_display(clean_edge: Edge) -> None:
    shape = CallerIdShape.build("pai", "e164-noplus", "caller", "", True, "none")
    invite = carrier_invite(clean_edge, shape)
    [from_] = header(invite, "From")
    assert re.match(rf"^<sip:14155550123@{re.escape(AGENT_IP)};user=phone>;tag=", from_), from_
    assert header(invite, "P-Asserted-Identity") == [f"<sip:14155550123@{AGENT_IP};user=phone>"]


def test_ppi_with_the_trunks_username_as_from_user_on_the_carriers_host(clean_edge: Edge) -> None:
    shape = CallerIdShape.build("ppi", "e164", "auth", "sip.carrier.example", False, "number")
    invite = carrier_invite(clean_edge, shape, credentials=("acct-7781", "s3cret-pass"))
    [from_] = header(invite, "From")
    assert re.match(rf'^"\{CALLER}" <sip:acct-7781@sip\.carrier\.example>;tag=', from_), from_
    assert header(invite, "P-Preferred-Identity") == [f"<sip:{CALLER}@sip.carrier.example>"]
    assert "s3cret-pass" not in invite


def test_national_number_in_remote_party_id(clean_edge: Edge) -> None:
    shape = CallerIdShape.build("rpid", "national", "caller", "", False, "keep")
    invite = carrier_invite(clean_edge, shape, number_format=NumberFormat("1", "", "011", 10))
    [from_] = header(invite, "From")
    assert re.match(rf'^"Caller" <sip:4155550123@{re.escape(AGENT_IP)}>;tag=', from_), from_
    assert header(invite, "Remote-Party-ID") == [
        f"<sip:4155550123@{AGENT_IP}>;party=calling;screen=yes;privacy=off"]


@pytest.mark.parametrize("shape", [CallerIdShape(), CallerIdShape.build("from", "e164-noplus", user_phone=True)],
                         ids=["unshaped", "shaped"])
def test_privacy_id_gives_an_anonymous_from_and_the_number_in_pai(clean_edge: Edge, shape: CallerIdShape) -> None:
    invite = carrier_invite(clean_edge, shape, extra_headers="      Privacy: id\n")
    [from_] = header(invite, "From")
    assert re.match(r'^"Anonymous" <sip:anonymous@anonymous\.invalid>;tag=', from_), from_
    [pai] = header(invite, "P-Asserted-Identity")
    assert "14155550123@" in pai and header(invite, "Privacy") == ["id"]
    assert CALLER not in from_
