"""STIR/SHAKEN signing of termination calls on the running edge: Kamailio's ``secsipid`` module
adds an ``Identity`` header (RFC 8224) to calls over a trunk with ``stir_sign``, and the test
verifies it as a carrier would, with PyJWT against the test key's public half: ES256 signature,
the PASSporT header (``ppt: shaken``, ``typ: passport``, ``x5u``) and claims (``attest``, ``orig``,
``dest``, ``iat``, ``origid``; RFC 8225, RFC 8588).  Attestation A for the trunk's own DID, B for a
number the agent is restricted to, C for an unrestricted agent's other number."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from routing.ops.stirsettings import Stir
from tests.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge, restarted

CERT_URL = "https://certs.example.test/shaken/edge.pem"
DEST = "+442071838750"


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ec.EllipticCurvePublicKey]:
    """An EC P-256 key (PEM, mode 0600) and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("stir") / "key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path, key.public_key()


@pytest.fixture(scope="module")
def signing_edge(edge: Edge, signing_key) -> Iterator[Edge]:
    with restarted(edge, "kamailio", stir=Stir(enabled=True, key_file=signing_key[0], cert_url=CERT_URL)):
        yield edge


@pytest.fixture
def stir_edge(signing_edge: Edge, clean_edge: Edge) -> Edge:
    """The signing edge with empty tables (and every counter back to zero afterwards)."""
    return clean_edge


def signed_invite(edge: Edge, caller: str, **agent: object) -> str:
    """bot calls +44 from ``caller`` over carrier-a (signing; the DID is its own); the INVITE its gateway receives."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], probe=False, stir_sign=True)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], probe=False, **agent)
    edge.did(DID, "carrier-a", "bot")
    edge.route("+44", "carrier-a", "0.0100")
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    call = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller=caller,
               scenario=reject_uac_scenario(edge.workdir))
    assert call.wait() == 0, call.output()
    assert carrier.wait() == 0, carrier.output()
    return carrier.received_requests("INVITE")[0]


def passport(invite: str, public_key: ec.EllipticCurvePublicKey) -> tuple[dict, dict]:
    """The verified PASSporT of an INVITE's Identity header: (JWT header, claims).  Fails on a
    missing header, a bad signature, or parameters other than RFC 8224 section 4.1's."""
    [value] = re.findall(r"^Identity:\s*(.+?)\s*$", invite, re.M | re.I)
    token, _, params = value.partition(";")
    assert f"info=<{CERT_URL}>" in params and "alg=ES256" in params and "ppt=shaken" in params, params
    claims = jwt.decode(token, public_key, algorithms=["ES256"], options={"verify_aud": False})
    return jwt.get_unverified_header(token), claims


def check(header: dict, claims: dict, orig: str, attest: str) -> None:
    assert header == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": CERT_URL}
    assert claims["attest"] == attest
    assert claims["orig"] == {"tn": orig.lstrip("+")} and claims["dest"] == {"tn": [DEST.lstrip("+")]}
    assert abs(claims["iat"] - time.time()) < 30 and claims["origid"]


def test_the_trunks_own_did_is_signed_with_full_attestation(stir_edge: Edge, signing_key) -> None:
    header, claims = passport(signed_invite(stir_edge, DID), signing_key[1])
    check(header, claims, DID, "A")


def test_a_number_the_agent_is_restricted_to_gets_attestation_b(stir_edge: Edge, signing_key) -> None:
    header, claims = passport(signed_invite(stir_edge, "+14155550123", caller_ids=("+1415",)), signing_key[1])
    check(header, claims, "+14155550123", "B")


def test_an_unrestricted_agents_other_number_gets_attestation_c(stir_edge: Edge, signing_key) -> None:
    header, claims = passport(signed_invite(stir_edge, "+12125550123"), signing_key[1])
    check(header, claims, "+12125550123", "C")


def test_a_trunk_without_stir_sign_gets_no_identity_header(stir_edge: Edge) -> None:
    edge = stir_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], probe=False)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], probe=False)
    edge.route("+44", "carrier-a", "0.0100")
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    call = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller=DID, scenario=reject_uac_scenario(edge.workdir))
    assert call.wait() == 0 and carrier.wait() == 0
    assert not re.search(r"^Identity:", carrier.received_requests("INVITE")[0], re.M | re.I)
