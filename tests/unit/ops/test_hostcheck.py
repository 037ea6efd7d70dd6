"""Configured addresses against the host's interfaces (pyroute2)."""

from __future__ import annotations

from routing.ops.hostcheck import check_addresses
from routing.ops.settings import Listener, RtpEngine, Settings, Sip


def with_listeners(*listeners: Listener, rtp: str = "127.0.0.1") -> Settings:
    return Settings(sip=Sip(listen=list(listeners)), rtpengine=RtpEngine(address=rtp))


def test_loopback_and_wildcards_are_accepted() -> None:
    settings = with_listeners(
        Listener(address="127.0.0.1"),
        Listener(transport="tcp", address="127.0.0.77"),
        Listener(address="0.0.0.0", port=5070),
        Listener(address="::", port=5071),
        Listener(address="::1", port=5072),
    )
    assert check_addresses(settings) == []


def test_foreign_address_is_rejected_naming_the_field() -> None:
    errors = check_addresses(with_listeners(Listener(address="192.0.2.55")))
    assert len(errors) == 1
    assert errors[0].startswith("sip.listen.0.address: 192.0.2.55 is not an address of this host")
    assert "advertise" in errors[0]


def test_second_listener_and_media_address_are_named() -> None:
    errors = check_addresses(with_listeners(Listener(), Listener(address="192.0.2.55", port=5070), rtp="192.0.2.56"))
    assert [e.split(":")[0] for e in errors] == ["sip.listen.1.address", "rtpengine.address"]


def test_foreign_address_is_fine_as_advertise() -> None:
    settings = with_listeners(Listener(address="127.0.0.1", advertise="192.0.2.55"))
    assert check_addresses(settings) == []
