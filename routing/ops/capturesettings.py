"""The ``capture`` section of the settings: SIP capture per call (docs/settings.md, docs/operations.md).

Kept apart from ``routing/ops/settings.py`` (which includes it as ``Settings.capture``) so that
module stays one screenful per section; validated the same way (unknown keys refused, frozen).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["Capture"]


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


_IpAddress = Annotated[str, AfterValidator(_ip)]


class Capture(BaseModel):
    """SIP capture per call (docs/operations.md#reading-a-calls-ladder): Kamailio's ``siptrace``
    module mirrors every SIP message it receives and sends as HEP3 to the monitor's collector on
    ``address:port`` (UDP), which keeps one file per Call-ID under ``dir`` and relays each packet to a
    Homer/heplify collector when ``hep_address`` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="capture every SIP message (siptrace trace_mode 1) and keep it per call")
    address: _IpAddress = Field("127.0.0.1", description="address of the monitor's HEP collector (UDP)")
    port: int = Field(
        9064, ge=1, le=65535,
        description="UDP port of the monitor's HEP collector (not 9060: a Homer collector on this host may use it)",
    )
    dir: Path | None = Field(None, description="capture files (mode 0700/0600; default <run_dir>/captures)")
    max_age_s: int = Field(
        86400, ge=1, le=90 * 86400, description="a call's capture is deleted this long after its last message (s)",
    )
    max_mb: int = Field(
        512, ge=1, le=1_000_000,
        description="bound of all capture files together (MB, 10^6 bytes); the calls written to least recently go first",
    )
    hep_address: _IpAddress | None = Field(None, description="Homer/heplify collector every HEP3 packet is relayed to")
    hep_port: int = Field(9060, ge=1, le=65535, description="UDP port of that collector")
    capture_id: int = Field(1, ge=0, le=4294967295, description="HEP capture agent id of this node (siptrace hep_capture_id)")

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 1_000_000
