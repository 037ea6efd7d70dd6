"""TLS signalling with a real TLS-capable SIP UA (baresip): a carrier calls over TLS and the
call leaves toward a UDP agent (RFC 5658 double Record-Route)."""

from __future__ import annotations

from pathlib import Path

from routing.tables import admin
from routing.ops import services
from routing.tables.model import Agent, Direction, Gateway, Transport, Trunk
from tests.sipp import reject_uac_scenario, uac, uas
from routing.ops.tlscert import write_selfsigned

from tests.baresip import Baresip

from .conftest import AGENT_IP, DID, EDGE_IP, NET, Edge

BARESIP_IP = f"{NET}.41"


def test_carrier_over_tls_reaches_udp_agent(clean_edge: Edge) -> None:
    edge = clean_edge
    # a TLS connection leaves from the kernel's choice of source address: the edge's own, or
    # 127.0.0.1 (the loopback's primary address) when the tests run on another EDGE_TEST_NET
    sources = (f"{EDGE_IP}/32",) + (("127.0.0.1/32",) if EDGE_IP != "127.0.0.1" else ())
    admin.put_trunk(edge.redis, Trunk("tls-carrier", Direction.BOTH, cidrs=sources))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",)))
    edge.did(DID, "tls-carrier", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=200, rtp_echo=False)
    # trust the edge's (self-signed) certificate
    with Baresip(edge.workdir / "carrier", BARESIP_IP, codecs=["PCMU"], cafile=edge.settings.tls_certificate) as ua:
        ua.dial(f"sip:{DID}@{EDGE_IP}:{edge.tls_port};transport=tls")
        ua.wait_event("CALL_ESTABLISHED")
        ua.hangup()
        ua.wait_event("CALL_CLOSED")
    assert agent.wait(timeout=20) == 0, agent.output()
    invite = agent.received_requests("INVITE")[0]
    assert "transport=tls" in invite  # the edge record-routes both transports
    assert "X-Edge-Trunk: tls-carrier" in invite
    assert agent.received_requests("ACK") and agent.received_requests("BYE")


GATEWAY_IP = f"{NET}.42"
DEST = "+442071838750"


def test_tls_gateway_verified_with_the_trunks_own_ca(clean_edge: Edge) -> None:
    """Termination over TLS (agent UDP -> edge -> carrier TLS, baresip as the carrier): with a CA
    that did not sign the gateway's certificate the call is refused; with the trunk's own CA
    (``tls_ca``, loaded with tls.reload) it is answered."""
    edge = clean_edge
    pki = edge.workdir / "pki"
    write_selfsigned(pki / "gw.crt", pki / "gw.key", [GATEWAY_IP])
    bundle = pki / "gw.pem"
    bundle.write_text((pki / "gw.crt").read_text() + (pki / "gw.key").read_text())
    gateway = Gateway(GATEWAY_IP, 5083, Transport.TLS)

    def provision(ca: Path) -> None:
        admin.put_trunk(edge.redis, Trunk("tls-gw", Direction.BOTH, gateways=(gateway,), tls_ca=str(ca)),
                        replace=True)
        services.tls_profiles(edge.settings, edge.redis, reload=True)

    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",)))
    provision(edge.settings.tls_certificate)  # the wrong CA: the edge's own certificate
    edge.route("+44", "tls-gw", "0.0100")
    tls_cfg = (Path(edge.settings.run_dir) / "tls.cfg").read_text()
    assert "server_id = tls-gw" in tls_cfg and f"ca_list = {edge.settings.tls_certificate}" in tls_cfg
    with Baresip(edge.workdir / "gateway", GATEWAY_IP, codecs=["PCMU"], sip_port=5082, user=DEST,
                 extra_config=f"sip_certificate\t{bundle}") as ua:
        refused = uac(edge.workdir / "refused", AGENT_IP, 5070, edge.sip, DEST, scenario=reject_uac_scenario(edge.workdir))
        assert refused.wait() == 0, refused.output()
        assert refused.final_status() == [(503, "All Carriers Failed")]
        assert not ua.has_event("CALL_INCOMING")
        assert "certificate verify failed" in edge.log() and "tried=tls-gw" in edge.log()

        provision(pki / "gw.crt")  # the CA that signed it
        assert f"ca_list = {pki / 'gw.crt'}" in (Path(edge.settings.run_dir) / "tls.cfg").read_text()
        caller = uac(edge.workdir / "answered", AGENT_IP, 5071, edge.sip, DEST, hold_ms=300,
                     scenario=reject_uac_scenario(edge.workdir))
        ua.answer(timeout=15)
        assert caller.wait() == 0, caller.output()
        assert [code for code, _ in caller.final_status()] == [200]
        ua.wait_event("CALL_CLOSED")
