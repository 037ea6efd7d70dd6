"""The caller's identity as the carrier verified it (STIR/SHAKEN, RFC 8224/8588), sans I/O.

A carrier that verifies the caller's ``Identity`` header passes the result as the ``verstat``
parameter (ATIS-1000074, a tel-URI/user parameter) of the From or P-Asserted-Identity URI's
user part: ``sip:+14155550123;verstat=TN-Validation-Passed@carrier.example``.  The edge hands
it to the agent (``X-Edge-Verstat``) and keeps it in the call record.

A carrier that passes the caller's ``Identity`` header itself may have it checked by the edge (trunk
``stir_verify``): the PASSporT's claims read here (:func:`parse_identity`, :func:`prechecked`), its
ES256 signature by Kamailio's ``secsipid`` against a certificate fetched beforehand by the monitor
(:mod:`routing.monitor.stircerts`); the result goes to the agent as ``X-Edge-Identity``.  secsipid
(libsecsipid 1.2, Kamailio 5.6) does not validate the certificate chain to an STI-CA root: a
``valid`` result proves the header was signed with the key of the certificate at its ``info`` URL,
fresh, for this caller; not who owns that certificate (docs/identity.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

__all__ = ["verstat", "VERSTAT_VALUES", "Passport", "parse_identity", "fetchable", "cert_name", "prechecked", "verdict",
           "IDENTITY_VALID", "IDENTITY_INVALID", "IDENTITY_UNVERIFIED"]

#: the values ATIS-1000074 defines (others are passed as they are, if they are tokens)
VERSTAT_VALUES = ("TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation")
_VERSTAT = re.compile(r";\s*verstat=([A-Za-z0-9._~+-]{1,64})", re.I)


def verstat(from_user: str, pai: str = "") -> str:
    """The carrier's verification status of the caller: the ``verstat`` parameter of the From
    URI's user part, else of the P-Asserted-Identity's; ``""`` when neither has one.

    Args:
        from_user: the From URI's user part with its user parameters (Kamailio ``$fU``).
        pai: the P-Asserted-Identity header value(s), ``""`` when absent.
    """
    for text in (from_user, pai):
        match = _VERSTAT.search(text or "")
        if match:
            return match.group(1)
    return ""


# --------------------------------------------------------------------------- the edge's own check


#: ``X-Edge-Identity`` values (docs/headers.md): the edge's check of a carrier's ``Identity`` header
IDENTITY_VALID = "valid"
IDENTITY_INVALID = "invalid"
IDENTITY_UNVERIFIED = "unverified"
_INFO = re.compile(r";\s*info\s*=\s*<([^>]{1,1024})>", re.I)


@dataclass(frozen=True, slots=True)
class Passport:
    """What the edge reads of an ``Identity`` header (RFC 8224 section 4.1) before checking it.

    Attributes:
        token: the PASSporT (compact JWS, RFC 8225).
        info: the certificate URL of its ``info`` parameter (the JWT's ``x5u`` must match it; secsipid checks).
        attest: the SHAKEN attestation claimed (``A``, ``B``, ``C``; RFC 8588), "" when none.
        orig: the originating number claimed (``orig.tn``, digits), "" when none.
        iat: the issue time claimed (epoch s), 0 when none.
    """

    token: str
    info: str
    attest: str = ""
    orig: str = ""
    iat: int = 0


def parse_identity(value: str) -> Passport | None:
    """The PASSporT of an ``Identity`` header value (``<jws>;info=<url>;alg=ES256;ppt=shaken``), its claims
    read without checking the signature; None when it is not one (no ``info``, not three base64url
    parts, a payload that is no JSON object)."""
    token = (value or "").split(";", 1)[0].strip()
    info = _INFO.search(value or "")
    parts = token.split(".")
    if info is None or len(parts) != 3 or not all(parts):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    orig = claims.get("orig") if isinstance(claims.get("orig"), dict) else {}
    iat = claims.get("iat")
    return Passport(token=token, info=info.group(1).strip(), attest=str(claims.get("attest") or "")[:1],
                    orig=str(orig.get("tn") or ""), iat=iat if isinstance(iat, int) else 0)


def fetchable(url: str, allow_http: bool = False) -> bool:
    """Whether the edge fetches a certificate from ``url``: ``https://`` (RFC 8226 section 9), and
    ``http://`` only when allowed (settings ``stir.verify_http``); nothing else (no ``file:``)."""
    return url.startswith("https://") or (allow_http and url.startswith("http://"))


def cert_name(url: str) -> str:
    """The file name (without suffix) of ``url``'s certificate in the cache: the SHA-256 of the URL
    in hex, so no URL can name a path (``<name>.url`` asks the monitor for it, ``<name>.pem`` is it)."""
    return hashlib.sha256(url.encode()).hexdigest()


def prechecked(passport: Passport | None, caller: str, now_s: float, expire_s: int) -> str:
    """The verdict the edge reaches without the signature: ``invalid;reason=malformed`` (no PASSporT),
    ``invalid;reason=expired`` (``iat`` older than ``expire_s`` or more than ``expire_s`` ahead),
    ``invalid;reason=orig`` (``orig.tn`` is not the caller's number, ``caller`` E.164 or digits);
    "" when the signature decides."""
    if passport is None:
        return f"{IDENTITY_INVALID};reason=malformed"
    if not passport.iat or abs(now_s - passport.iat) > expire_s:
        return f"{IDENTITY_INVALID};reason=expired"
    if passport.orig.lstrip("+") != caller.lstrip("+"):
        return f"{IDENTITY_INVALID};reason=orig"
    return ""


#: libsecsipid 1.2's error codes (its secsipid.go; measured through Kamailio 5.6's secsipid_check)
SECSIPID_REASONS = {-251: "signature", -232: "expired", -205: "info"}


def verdict(passport: Passport, secsipid_ret: int) -> str:
    """The ``X-Edge-Identity`` value once secsipid checked the header: ``secsipid_check`` returns 1
    when the ES256 signature verifies with the certificate's key, the PASSporT is fresh and its
    ``x5u`` is the ``info`` URL; a negative libsecsipid code otherwise (:data:`SECSIPID_REASONS`:
    ``invalid;reason=signature``, ``expired``, ``info``, else ``secsipid<code>``)."""
    if secsipid_ret > 0:
        return f"{IDENTITY_VALID};attest={passport.attest or '-'}"
    return f"{IDENTITY_INVALID};reason={SECSIPID_REASONS.get(secsipid_ret, f'secsipid{secsipid_ret}')}"
