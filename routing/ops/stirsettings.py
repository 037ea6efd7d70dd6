"""The ``stir`` section of the settings: STIR/SHAKEN signing of termination calls (docs/identity.md#stirshaken-signing)
and the check of inbound ``Identity`` headers (docs/identity.md#checking-inbound-identity-headers).

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
    verify: bool = Field(False, description="load secsipid and check the Identity header of inbound calls on trunks "
                                            "with stir_verify, against certificates the monitor fetched beforehand")
    verify_expire_s: int = Field(60, ge=10, le=3600, description="a PASSporT older than this (its iat, s) is invalid "
                                                                 "(RFC 8224 section 6.2.1 recommends 60)")
    verify_cache_dir: Path | None = Field(None, description="where the monitor keeps the fetched certificates "
                                                            "(default <run_dir>/stir-certs)")
    verify_refresh_s: int = Field(3600, ge=60, le=86400, description="a cached certificate is fetched again after (s)")
    verify_max_age_s: int = Field(86400, ge=60, le=30 * 86400,
                                  description="a cached certificate older than this is not used (s)")
    verify_http: bool = Field(False, description="also fetch http:// certificate URLs (labs and tests; RFC 8226 "
                                                 "wants https)")

    def cert_dir(self, run_dir: Path) -> Path:
        """The directory of the fetched certificates (``verify_cache_dir``, else ``<run_dir>/stir-certs``)."""
        return self.verify_cache_dir or Path(run_dir) / "stir-certs"

    @model_validator(mode="after")
    def _complete(self) -> "Stir":
        if not self.enabled:
            return self
        if self.key_file is None or not self.key_file.is_file():
            raise ValueError(f"key_file: {self.key_file or 'not set'} is not a file (stir.enabled needs the signing key)")
        if not self.cert_url.startswith("https://"):
            raise ValueError(f"cert_url: {self.cert_url!r} is not an https:// URL (RFC 8226 section 9)")
        return self
