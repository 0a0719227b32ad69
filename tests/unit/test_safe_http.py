"""The pure parts of shared/safe_http.py: which addresses callbacks may reach, the allow-list
setting, and the acceptance-time check of a callback URL in every spelling of an address."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from shared.safe_http import (
    AddressNotAllowed,
    address_allowed,
    check_callback_url,
    parse_networks,
)
from shared.settings import GatewaySettings, SettingsError, TrackerSettings, load_settings

LOCAL = parse_networks("127.0.0.0/8,::1/128")

REFUSED = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.1.2.3",  # private
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the cloud metadata endpoint
    "169.254.0.1",
    "100.64.0.1",  # CGNAT, shared address space
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 -- this network, refused, not bound to
    "0.1.2.3",
    "224.0.0.1",  # multicast, which Python calls global
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "192.0.0.1",  # IETF protocol assignments
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",  # IPv6 loopback
    "::",  # unspecified
    "fc00::1",  # unique-local
    "fd12:3456::1",
    "fe80::1",  # link-local
    "ff02::1",  # multicast, which Python calls global
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible, which Python calls global
    "::10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1, which Python calls global
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::808:808",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1, which Python calls global
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2001::1",  # Teredo
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",  # mapped, embedding a public address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("text", REFUSED)
def test_a_refused_address_is_refused(text: str) -> None:
    assert not address_allowed(ip_address(text), ())


@pytest.mark.parametrize("text", PUBLIC)
def test_a_public_address_is_allowed(text: str) -> None:
    assert address_allowed(ip_address(text), ())


@pytest.mark.parametrize(
    "text", ["100.64.0.1", "224.0.0.1", "ff02::1", "::127.0.0.1", "64:ff9b::7f00:1"]
)
def test_why_is_global_alone_is_not_enough(text: str) -> None:
    """The cases Python's ``is_global`` gets wrong for us, or right where we check: if
    a Python release changes them, these say which rule of ours still holds."""
    address = ip_address(text)
    cgnat = text == "100.64.0.1"
    assert address.is_global is not cgnat
    assert not address_allowed(address, ())


def test_the_allow_list_lets_its_networks_through() -> None:
    assert address_allowed(IPv4Address("127.0.0.1"), LOCAL)
    assert address_allowed(IPv6Address("::1"), LOCAL)
    # A mapped address is the IPv4 address it maps, for the allow-list too.
    assert address_allowed(IPv6Address("::ffff:127.0.0.1"), LOCAL)
    assert not address_allowed(IPv4Address("10.0.0.1"), LOCAL)
    assert not address_allowed(IPv4Address("169.254.169.254"), LOCAL)
    assert address_allowed(IPv4Address("10.9.8.7"), parse_networks("10.0.0.0/8"))


def test_parse_networks() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" , ") == ()
    assert parse_networks("127.0.0.0/8, ::1/128,10.0.0.1") == (
        ip_network("127.0.0.0/8"),
        ip_network("::1/128"),
        ip_network("10.0.0.1/32"),
    )


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "127.0.0.1/8", "1.2.3.4/x"])
def test_parse_networks_refuses_what_is_not_a_network(value: str) -> None:
    with pytest.raises(ValueError, match="not a network in CIDR notation"):
        parse_networks(value)


LITERAL_HOSTS = [
    "127.0.0.1",
    "127.0.0.1.",  # the root's trailing dot
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.1",  # hex, short
    "0x7f000001",
    "127.1",  # short
    "0177.1",
    "0",
    "0x0",
    "169.254.169.254",
    "2852039166",  # 169.254.169.254 in decimal
    "0xa9.0xfe.0xa9.0xfe",
    "10.1",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",  # the same, in hex
    "[::ffff:169.254.169.254]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[fe80::1%25eth0]",  # with a zone
    "[fd00::2]",
]


@pytest.mark.parametrize("host", LITERAL_HOSTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_literal_host_is_refused_in_every_spelling(scheme: str, host: str) -> None:
    with pytest.raises(AddressNotAllowed, match="not a public address"):
        check_callback_url(f"{scheme}://{host}:8080/hook?x=1", ())


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::1]"]
)
def test_an_allowed_literal_host_is_accepted(host: str) -> None:
    url = f"http://{host}:8080/hook"
    assert check_callback_url(url, LOCAL) == url
    with pytest.raises(AddressNotAllowed):
        check_callback_url(url, parse_networks("10.0.0.0/8"))


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/email",
        "http://example.com",
        "https://localhost/x",  # a name: decided at connection time
        "https://metadata.google.internal/",
        "https://8.8.8.8/hook",
        "https://134744072/hook",  # 8.8.8.8 in decimal
        "https://[2606:4700:4700::1111]:8443/hook",
        "https://[::ffff:8.8.8.8]/hook",
        "https://bücher.example/hook",
        "https://example.com:443/a?b=c#d",
        "https://1.example.com/",  # a number as a label, but not the last one
    ],
)
def test_a_public_or_named_host_is_accepted(url: str) -> None:
    assert check_callback_url(url, ()) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "absolute http or https"),
        ("file:///etc/passwd", "absolute http or https"),
        ("gopher://127.0.0.1:6379/_", "absolute http or https"),
        ("//example.com/x", "absolute http or https"),
        ("example.com/x", "absolute http or https"),
        ("http:///x", "absolute http or https"),
        ("https://user:secret@example.com/", "user information"),
        ("https://example.com@127.0.0.1/", "user information"),
        ("https://@example.com/", "user information"),
        ("https://example.com:port/", "not a valid URL"),
        ("https://[::1/", "not a valid URL"),
        ("https://[not:an:address]/", "not a valid URL"),
        ("https://1.2.3.4.5/", "ends in a number"),
        ("https://example.123/", "ends in a number"),
        ("https://256.1.1.1/", "ends in a number"),
        ("https://08.0.0.1/", "ends in a number"),
        ("https://4294967296/", "ends in a number"),
        ("https://example.com\\@127.0.0.1/", "backslashes"),
        ("https://example.com /", "backslashes, spaces"),
        ("https://exa\tmple.com/", "backslashes, spaces"),
        ("https://example.com/\x00", "control characters"),
    ],
)
def test_what_is_not_a_callback_url(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as raised:
        check_callback_url(url, LOCAL)
    assert not isinstance(raised.value, AddressNotAllowed)


@pytest.mark.parametrize("kind", [GatewaySettings, TrackerSettings], ids=lambda k: k.__name__)
def test_the_allow_list_setting_is_checked_at_start_up(
    kind: type[GatewaySettings | TrackerSettings],
) -> None:
    assert load_settings(kind, {}).callback_allowed_networks == ""
    value = "127.0.0.0/8,::1/128"
    assert (
        load_settings(kind, {"CALLBACK_ALLOWED_NETWORKS": value}).callback_allowed_networks == value
    )
    with pytest.raises(SettingsError, match="not a network in CIDR notation"):
        load_settings(kind, {"CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/8"})
