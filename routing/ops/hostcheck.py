"""Checks of configured addresses against the host's interfaces (pyroute2).

A listen address that is not configured on any interface would make Kamailio
or rtpengine fail at start-up with an obscure bind error; this names the
field instead.  Wildcards (``0.0.0.0``, ``::``) always pass; ``advertise``
addresses are the public side of a NAT and are never checked.
"""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute

from routing.ops.settings import Settings

__all__ = ["host_addresses", "check_addresses"]


def host_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every IPv4/IPv6 address on the host's interfaces (netlink RTM_GETADDR).

    Loopback ``127.0.0.0/8`` counts as a whole network, as Linux answers on
    every address in it.
    """
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            value = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
            if value:
                found.add(ipaddress.ip_address(value.split("%")[0]))
    return found


def _on_host(address: str, present: set[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return True
    if ip.version == 4 and ip in ipaddress.ip_network("127.0.0.0/8"):
        return True
    return ip in present


def check_addresses(settings: Settings) -> list[str]:
    """Errors for listen/media addresses that are not on this host (empty list when all are).

    Each error names the settings field, e.g. ``sip.listen.1.address: 192.0.2.5 is not
    an address of this host (declare it as advertise: if it is a public NAT address)``.
    """
    present = host_addresses()
    errors = []
    fields = [(f"sip.listen.{i}.address", l.address) for i, l in enumerate(settings.sip.listen)]
    if settings.rtpengine.sides is None:
        fields.append(("rtpengine.address", settings.rtpengine.address))
    else:
        fields += [(f"rtpengine.sides.{side}.address", getattr(settings.rtpengine.sides, side).address)
                   for side in ("carrier", "agent")]
    fields.append(("metrics.address", settings.metrics.address))
    for field, address in fields:
        if not _on_host(address, present):
            errors.append(
                f"{field}: {address} is not an address of this host "
                "(if it is the public address in front of a NAT, set it as 'advertise' instead)"
            )
    return errors
