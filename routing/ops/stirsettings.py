"""The ``stir`` section of the settings: STIR/SHAKEN signing of termination calls (docs/identity.md#stirshaken-signing).

Kept apart from ``routing/ops/settings.py`` (which includes it as ``Settings.stir``), validated
the same way (unknown keys refused, frozen).  The private key stays a file on the node: only its
path is a setting, and nothing prints, stores or renders its content.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Stir"]


class Stir(BaseModel):
    """Signing with Kamailio's ``secsipid`` module (RFC 8224 Identity header, RFC 8225 PASSporT,
    RFC 8588 SHAKEN): the trunks with ``stir_sign`` get an ``Identity`` header on their calls,
    signed with ``key_file`` (ES256: an EC P-256 private key, PEM) and naming ``cert_url`` (the
    certificate the carrier fetches to verify it, ``x5u``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="load secsipid and sign the calls of trunks with stir_sign")
    key_file: Path | None = Field(None, description="PEM EC P-256 private key (readable by Kamailio only)")
    cert_url: str = Field("", description="HTTPS URL of the certificate of that key (the PASSporT's x5u)")

    @model_validator(mode="after")
    def _complete(self) -> "Stir":
        if not self.enabled:
            return self
        if self.key_file is None or not self.key_file.is_file():
            raise ValueError(f"key_file: {self.key_file or 'not set'} is not a file (stir.enabled needs the signing key)")
        if not self.cert_url.startswith("https://"):
            raise ValueError(f"cert_url: {self.cert_url!r} is not an https:// URL (RFC 8226 section 9)")
        return self
