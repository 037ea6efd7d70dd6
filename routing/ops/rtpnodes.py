"""Settings of an rtpengine set: rtpengine on hosts other than the edge, chosen per call by weight.

``rtpengine.nodes`` lists them; when it is empty (the default) Kamailio and the plugin use the
edge's own local rtpengine on ``127.0.0.1:rtpengine.ng_port``, exactly as without this module.
Kamailio's rtpengine module balances over the set (``rtpengine_sock`` "udp:HOST:PORT=WEIGHT ...",
Kamailio 5.6 ``README.rtpengine`` section 2 and 4.1), keeps each call on the node of its offer
(its Call-ID hash table, ``hash_table_tout``) and disables a node that does not answer for
``rtpengine_disable_tout`` seconds (``disable_s`` here).  docs/media.md#rtpengine-sets.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RtpNode", "node_url", "sock_param"]


class RtpNode(BaseModel):
    """One rtpengine of the set: its ng control socket (UDP) and its share of new calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="IP address of the node's listen-ng (UDP)")
    ng_port: int = Field(2223, ge=1, le=65535, description="the node's ng control port (UDP)")
    weight: int = Field(1, ge=1, le=1000, description="share of new calls: weight / sum of the weights of nodes up")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @property
    def url(self) -> str:
        """The node as Kamailio's rtpengine module names it (``rtp_inst_pvar``, RPC ``rtpengine.show``)."""
        return node_url(self.address, self.ng_port)


def node_url(address: str, port: int) -> str:
    """``udp:HOST:PORT`` (``udp6:[HOST]:PORT`` for IPv6), the module's name of a node."""
    if ":" in address:
        return f"udp6:[{address}]:{port}"
    return f"udp:{address}:{port}"


def sock_param(nodes: tuple[RtpNode, ...] | list[RtpNode]) -> str:
    """The ``rtpengine_sock`` value of one set holding every node with its weight."""
    return " ".join(f"{n.url}={n.weight}" for n in nodes)
