"""Numbers as peers write them, through the running edge with SIPp carriers and agents.

Each test sends one INVITE whose Request-URI (or To) writes the number in one form: ``tel:`` URIs
(RFC 3966) with visual separators or a ``phone-context``, ``sip:`` user parts with separators or
``%``-escapes (RFC 3261 section 19.1.2), and national or ``011`` numbers read with a trunk's or an
agent's number format.  It proves that the call reaches the right callee exactly once (one
relayed INVITE), addressed with the E.164 number, that the headers the edge adds carry it
(``X-Edge-DID`` toward agents), and that the call record holds it.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.cli import main as cli_main
from routing.tables.model import Agent, Direction, Gateway, Trunk
from routing.call.numbers import NumberFormat
from tests.sipp import SippRun, reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .replies import header_values, received_messages, request_line

GW = 5080
AGENT_PORT = 5090
NANP = NumberFormat(country_code="1", international_prefix="011", national_length=10)
#: the edge's address in a scenario's URIs (SIPp fills it in)
AT_EDGE = "@[remote_ip]:[remote_port]"
_runs = itertools.count()


def provision(edge: Edge, agent_format: NumberFormat = NumberFormat()) -> None:
    """carrier-a (NANP numbers) owns DID +14155550100, bound to agent bot; every destination
    routes to carrier-a."""
    admin.put_trunk(edge.redis, Trunk("carrier-a", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(CARRIER_A, GW),), number_format=NANP))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      number_format=agent_format))
    edge.did(DID, "carrier-a", "bot")
    edge.route("+", "carrier-a", "0.0100")


def call(edge: Edge, source: str, request_uri: str, to_uri: str = "") -> list[tuple[int, str]]:
    """One INVITE from ``source`` with this Request-URI (and To URI, default the same); the final
    responses the caller got."""
    run = next(_runs)
    scenario = reject_uac_scenario(edge.workdir / f"scenario-{run}", request_uri=request_uri, to_uri=to_uri)
    caller = uac(edge.workdir / f"caller-{run}", source, 5070, edge.sip, "unused", scenario=scenario)
    assert caller.wait() == 0, caller.output()
    return caller.final_status()


def relayed_invites(callee: SippRun) -> list[str]:
    """The INVITEs the callee received, one per transaction (top Via branch): retransmissions are
    folded, so two entries mean the edge relayed the call twice."""
    by_branch: dict[str, str] = {}
    for message in received_messages(callee):
        if message.startswith("INVITE "):
            branch = re.search(r"branch=([^;,\s]+)", header_values(message, "Via", "v")[0])
            assert branch, message
            by_branch.setdefault(branch.group(1), message)
    return list(by_branch.values())


def record_of(edge: Edge, since_ms: int) -> dict:
    """The one call record written since ``since_ms``."""
    cdrs = CdrStore(edge.redis, 86400)
    found = wait_until(lambda: cdrs.records(since_ms, int(time.time() * 1000) + 1000), timeout=20,
                       what="the call record")
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------------------- termination

TERMINATION_FORMS = [
    pytest.param("tel:+1-415-555-0100", id="tel_global_number_with_dashes"),
    pytest.param("tel:4155550100;phone-context=+1", id="tel_local_number_with_phone_context"),
    pytest.param(f"sip:+1-415-555-0100{AT_EDGE}", id="sip_user_with_dashes"),
    pytest.param(f"sip:+1.415.555.0100{AT_EDGE};user=phone", id="sip_user_phone_with_dots"),
    pytest.param(f"sip:4155550100;phone-context=+1{AT_EDGE};user=phone", id="sip_user_phone_with_phone_context"),
    pytest.param(f"sip:%2B14155550100{AT_EDGE}", id="sip_user_with_escaped_plus"),
    pytest.param(f"sip:%2B1%20(415)%20555-0100{AT_EDGE}", id="sip_user_with_escaped_plus_spaces_and_parentheses"),
]


@pytest.mark.parametrize("request_uri", TERMINATION_FORMS)
def test_agent_dialling_reaches_the_carrier_once_as_e164(clean_edge: Edge, request_uri: str) -> None:
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000) - 1
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert call(edge, AGENT_IP, request_uri) == [(200, "OK")]
    carrier.stop()
    [invite] = relayed_invites(carrier)
    assert request_line(invite) == f"sip:+14155550100@{CARRIER_A}:{GW}"
    record = record_of(edge, since)
    assert (record["direction"], record["number"], record["agent"], record["trunk"]) == \
        ("termination", "+14155550100", "bot", "carrier-a")


def test_agent_dialling_00_international_prefix_reaches_the_carrier_as_e164(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert call(edge, AGENT_IP, f"sip:0044-20-7183-8750{AT_EDGE}") == [(200, "OK")]
    carrier.stop()
    [invite] = relayed_invites(carrier)
    assert request_line(invite) == f"sip:+442071838750@{CARRIER_A}:{GW}"


def test_agent_dialling_a_local_number_in_a_domain_context_gets_484(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert call(edge, AGENT_IP, "tel:4155550100;phone-context=example.com") == [(484, "Invalid Destination Number")]
    carrier.stop()
    assert relayed_invites(carrier) == []


def test_nanp_agent_dialling_011_reaches_the_carrier_as_e164(clean_edge: Edge) -> None:
    """The agent's number format set with edgectl, as an operator would."""
    edge = clean_edge
    provision(edge)
    settings = Path(edge.settings.run_dir).parent / "settings.yaml"
    result = CliRunner().invoke(cli_main, ["--settings", str(settings), "agent", "add", "bot", "--replace",
                                           "--uri", f"sip:{AGENT_IP}:{AGENT_PORT}", "--cidr", f"{AGENT_IP}/32",
                                           "--country-code", "1", "--international-prefix", "011",
                                           "--national-length", "10"])
    assert result.exit_code == 0, result.output
    since = int(time.time() * 1000) - 1
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert call(edge, AGENT_IP, f"sip:011447700900123{AT_EDGE}") == [(200, "OK")]
    carrier.stop()
    [invite] = relayed_invites(carrier)
    assert request_line(invite) == f"sip:+447700900123@{CARRIER_A}:{GW}"
    assert record_of(edge, since)["number"] == "+447700900123"


def test_agent_without_a_number_format_dialling_011_gets_484(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert call(edge, AGENT_IP, f"sip:011447700900123{AT_EDGE}") == [(484, "Invalid Destination Number")]
    carrier.stop()
    assert relayed_invites(carrier) == []


# ----------------------------------------------------------------------------- origination

#: a DID of carrier-a outside its own country: its local form only reads right through its phone-context
#: (without it, carrier-a's NANP format reads 2071838750 as +12071838750)
UK_DID = "+442071838750"

ORIGINATION_FORMS = [
    pytest.param("tel:+1-415-555-0100", "", DID, id="tel_global_number_with_dashes"),
    pytest.param("tel:2071838750;phone-context=+44", "", UK_DID, id="tel_local_number_with_phone_context"),
    pytest.param(f"sip:+1-415-555-0100{AT_EDGE}", "", DID, id="sip_user_with_dashes"),
    pytest.param(f"sip:(415)%20555-0100{AT_EDGE}", "", DID, id="sip_user_national_with_parentheses_and_escaped_space"),
    pytest.param(f"sip:2071838750;phone-context=+44{AT_EDGE};user=phone", "", UK_DID,
                 id="sip_user_phone_with_phone_context"),
    pytest.param(f"sip:%2B14155550100{AT_EDGE}", "", DID, id="sip_user_with_escaped_plus"),
    pytest.param("sip:[remote_ip]:[remote_port]", "tel:+1-415-555-0100", DID,
                 id="to_tel_uri_when_the_request_uri_has_no_user"),
    pytest.param("sip:[remote_ip]:[remote_port]", "tel:2071838750;phone-context=+44", UK_DID,
                 id="to_tel_uri_with_phone_context_when_the_request_uri_has_no_user"),
]


@pytest.mark.parametrize(("request_uri", "to_uri", "did"), ORIGINATION_FORMS)
def test_carrier_call_reaches_the_did_agent_once_as_e164(clean_edge: Edge, request_uri: str, to_uri: str,
                                                         did: str) -> None:
    edge = clean_edge
    provision(edge)
    edge.did(UK_DID, "carrier-a", "bot")
    since = int(time.time() * 1000) - 1
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=20,
                rtp_echo=False)
    assert call(edge, CARRIER_A, request_uri, to_uri) == [(200, "OK")]
    agent.stop()
    [invite] = relayed_invites(agent)
    assert request_line(invite) == f"sip:{did}@{AGENT_IP}:{AGENT_PORT}"
    assert header_values(invite, "X-Edge-DID") == [did]
    assert header_values(invite, "X-Edge-Trunk") == ["carrier-a"]
    record = record_of(edge, since)
    assert (record["direction"], record["number"], record["agent"], record["trunk"]) == \
        ("origination", did, "bot", "carrier-a")


def test_carrier_call_to_a_local_number_in_a_domain_context_gets_404(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=20,
                rtp_echo=False)
    assert call(edge, CARRIER_A, "tel:4155550100;phone-context=example.com") == [(404, "DID Not Found")]
    agent.stop()
    assert relayed_invites(agent) == []
