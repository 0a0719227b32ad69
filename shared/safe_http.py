"""Outgoing HTTP to URLs our clients name: callbacks reach public addresses only.

A callback URL is the one URL we fetch on someone else's say-so, so it could point the
platform at itself: the cloud metadata endpoint (169.254.169.254), the store, NATS, anything
on a private network. Two checks keep it out, at two moments:

- ``check_callback_url``, when a submission is accepted: an absolute http(s) URL without
  user information, and a host that is not an IP literal of a refused address, in any of
  the spellings resolvers accept (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``,
  ``[::ffff:127.0.0.1]``). A name is not resolved here: what it resolves to can change
  between acceptance and delivery, so only the second check can decide for names.
- ``safe_http_client``, at every new connection: the host is resolved once, the connection
  is refused (``UnsafeAddress``) if ANY of its addresses is refused — a name with one public
  and one private address must not be reachable through the private one — and the socket
  is opened to a checked address itself, so a second resolution (DNS rebinding) cannot swap
  it. TLS still sends the host name (SNI) and checks the certificate against it. Redirects
  are not followed (a 302 to a private address would be a way round), and proxies from the
  environment are not used (a proxy would resolve the name itself).

A refused address is anything that is not ``is_global`` (loopback, private, link-local with
169.254.169.254, CGNAT 100.64/10, 0/8, reserved, broadcast, unique-local, documentation), or
is multicast (Python counts 224/4 and ff00::/8 as global), judged after unwrapping the IPv4
address an IPv6 one carries (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4): the
wrapped IPv4 is where the packets end up, and Python calls some wrappers of 127.0.0.1
global (``64:ff9b::7f00:1``, ``2002:7f00:1::``). Networks in the allow-list
(``callback_allowed_networks``) are reachable despite all that: tests, and private
deployments with receivers on a private network.

Why not ``safehttpx``: it only does GET, accepts a name when one of its addresses is public,
asks a public DNS-over-HTTPS service when the local resolver refuses, and keeps CGNAT and
IPv4-mapped addresses as public.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = [
    "AddressNotAllowed",
    "UnsafeAddress",
    "address_allowed",
    "check_callback_url",
    "parse_networks",
    "safe_http_client",
]

_Address: TypeAlias = IPv4Address | IPv6Address
_Network: TypeAlias = IPv4Network | IPv6Network


class UnsafeAddress(httpx.ConnectError):
    """A connection refused because its host resolves to a refused address.

    A ``ConnectError``: to the caller it is a connection that could not be made, and nothing
    was sent. Retrying does not help unless the name's addresses change.
    """

    def __init__(self, host: str, address: _Address) -> None:
        super().__init__(
            f"refused to connect to {host}: it resolves to {address}, which is not a public "
            "address and not in callback_allowed_networks"
        )
        self.host = host
        self.address = address


class AddressNotAllowed(ValueError):
    """``check_callback_url``'s refusal of a URL whose host is a refused IP literal, apart
    from its other refusals (a malformed URL), which are plain ``ValueError``."""


def parse_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """The allow-list setting: comma-separated CIDRs (``127.0.0.0/8,::1/128``); an address
    alone is its own /32 or /128. A network with host bits set is a ValueError: it is
    likely a typo, and guessing which network was meant would widen the hole silently."""
    networks: list[_Network] = []
    for item in value.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ip_network(text))
        except ValueError as e:
            raise ValueError(f"{text!r} is not a network in CIDR notation: {e}") from e
    return tuple(networks)


# NAT64's well-known prefix (RFC 6052) carries an IPv4 address in its last 32 bits, and so
# does the deprecated IPv4-compatible form ::/96 (which also holds :: and ::1). The
# local-use NAT64 prefix (RFC 8215) reaches a private translator: refused whole.
_NAT64: Final = ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE: Final = ip_network("::/96")


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _public(address: _Address) -> bool:
    target: _Address = address
    if isinstance(address, IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        target = _embedded_ipv4(address) or address
    return target.is_global and not target.is_multicast


def address_allowed(
    address: IPv4Address | IPv6Address, allowed: Sequence[IPv4Network | IPv6Network]
) -> bool:
    """Whether we may connect to ``address``: a public one, or one in ``allowed``.

    An IPv4-mapped address (``::ffff:127.0.0.1``) is the IPv4 address it maps for the
    allow-list too: a socket to it reaches that IPv4 address.
    """
    candidates: list[_Address] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    if any(candidate in network for candidate in candidates for network in allowed):
        return True
    return _public(address)


# The last label of a host that resolvers read as a number: then the whole host is an IPv4
# address in inet_aton's spellings (decimal, octal, hex, 1 to 4 parts), as the WHATWG URL
# standard says, and what is not a valid one is no host at all.
_NUMBER_LABEL: Final = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _literal_address(host: str) -> _Address | None:
    """The address an IP-literal host names, in any spelling; None for a name."""
    if ":" in host:
        try:
            return IPv6Address(host)
        except ValueError:
            raise ValueError(f"host {host!r} is not a valid IPv6 address") from None
    labels = host.removesuffix(".").split(".")
    if not _NUMBER_LABEL.fullmatch(labels[-1]):
        return None
    # inet_aton would also take "1.2.3.4 anything": every label must be a number first.
    if not all(_NUMBER_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"host {host!r} ends in a number but is not an IPv4 address")
    try:
        return IPv4Address(socket.inet_aton(".".join(labels)))
    except OSError:
        raise ValueError(f"host {host!r} ends in a number but is not an IPv4 address") from None


def check_callback_url(url: str, allowed: Sequence[IPv4Network | IPv6Network]) -> str:
    """``url`` if we may accept it as a callback URL; otherwise ValueError with the reason
    (``AddressNotAllowed`` when the host is an IP literal of a refused address).

    Backslashes, spaces and control characters are refused outright: parsers disagree on
    them (browsers read ``\\`` as ``/``), and a URL two parsers read differently is how
    checks like this one are got round.
    """
    if any(c == "\\" or c.isspace() or not c.isprintable() for c in url):
        raise ValueError("a URL has no backslashes, spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as e:
        raise ValueError(f"not a valid URL: {e}") from e
    if parts.scheme not in {"http", "https"} or not host:
        raise ValueError("not an absolute http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a callback URL has no user information (user:password@)")
    address = _literal_address(host)
    if address is not None and not address_allowed(address, allowed):
        raise AddressNotAllowed(
            f"host {host} is the address {address}, which is not a public address"
        )
    return url


class _CheckingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, with our resolution in front of every TCP connection.

    httpcore hands ``connect_tcp`` the URL's host and later hands ``start_tls`` the same
    host as ``server_hostname``, so connecting to an address we resolved leaves SNI and the
    certificate check on the name.
    """

    def __init__(self, allowed: tuple[_Network, ...]) -> None:
        self._allowed = allowed
        # AnyIO on asyncio: the resolution below uses the asyncio loop anyway.
        self._backend = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int) -> list[_Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:  # socket.gaierror: no such name, resolver down
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
        addresses = [
            ip_address(sockaddr[0])
            for family, _, _, _, sockaddr in infos
            if family in {socket.AF_INET, socket.AF_INET6}
        ]
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no IP address")
        return list(dict.fromkeys(addresses))

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await self._resolve(host, port)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from e
        for address in addresses:
            if not address_allowed(address, self._allowed):
                raise UnsafeAddress(host, address)
        # Each checked address in the resolver's order, as socket.create_connection does.
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} took over {timeout} s")
            # The IPv4 address a mapped one stands for: where the packets go anyway, and
            # reachable on a host without IPv6.
            target = address.ipv4_mapped if isinstance(address, IPv6Address) else None
            try:
                return await self._backend.connect_tcp(
                    str(target or address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as e:
                failure = e
        assert failure is not None  # addresses is not empty
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# As httpx's own default transport.
_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def _checking_transport(allowed: tuple[_Network, ...]) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a connection pool that connects through ``_CheckingBackend``.

    httpcore documents ``network_backend=`` on its pool; httpx 0.28 has no way to pass one
    to its transport (encode/httpx#3749 proposes it). So the pool is built with httpcore's
    public constructor and set as the transport's ``_pool``, the one private name we rely
    on — rather than also reaching into the pool's private ``_network_backend``. Were httpx
    to stop keeping its pool there, the guard below fails at construction instead of
    letting connections bypass the check (and tests/integration/test_safe_http.py fails).
    """
    transport = httpx.AsyncHTTPTransport(limits=_LIMITS)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError(
            "httpx.AsyncHTTPTransport keeps no httpcore pool in _pool any more: "
            "shared/safe_http.py must give it its network backend another way"
        )
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=_LIMITS.max_connections,
        max_keepalive_connections=_LIMITS.max_keepalive_connections,
        keepalive_expiry=_LIMITS.keepalive_expiry,
        network_backend=_CheckingBackend(allowed),
    )
    return transport


def safe_http_client(
    *, allowed: Sequence[IPv4Network | IPv6Network], timeout: float
) -> httpx.AsyncClient:
    """An httpx client that connects to allowed addresses only (``UnsafeAddress`` for the
    rest), follows no redirect and ignores proxy settings in the environment; ``timeout``
    as httpx's, for each of connect (resolution included), read, write and pool."""
    return httpx.AsyncClient(
        transport=_checking_transport(tuple(allowed)),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
