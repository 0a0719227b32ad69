"""``safe_http_client`` against real HTTP servers on loopback: a callback to a refused address
never leaves the client, whatever the URL's spelling; an allowed one goes through, with the
connection pinned to the checked address and TLS still checked against the host name; a
redirect is handed back, not followed."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.safe_http import UnsafeAddress, parse_networks, safe_http_client

LOCAL = parse_networks("127.0.0.0/8,::1/128")
TIMEOUT = 5.0


class Seen:
    """What a receiver was asked: (method, path, Host header) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.requests.append(("POST", self.path, self.headers["Host"]))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def port(seen: Seen) -> Iterator[int]:
    """A receiver on 127.0.0.1."""
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen)))


@pytest.fixture
def port6(seen: Seen) -> Iterator[int]:
    """A receiver on ::1."""
    yield from _serve(_IPv6Server(("::1", 0), _handler(seen)))


def _url(form: str, port: int, port6: int) -> str:
    return form.format(port=port6 if "[::1]" in form else port)


REFUSED_FORMS = [
    "http://127.0.0.1:{port}/hook",
    "http://localhost:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://0x7f.1:{port}/hook",
    "http://127.1:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://[::ffff:7f00:1]:{port}/hook",
]


@pytest.mark.parametrize("form", REFUSED_FORMS)
async def test_a_loopback_callback_is_refused_in_every_spelling(
    form: str, port: int, port6: int, seen: Seen
) -> None:
    url = _url(form, port, port6)
    async with safe_http_client(allowed=(), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeAddress, match="not a public address") as refused:
            await client.post(url, json={"status": "SENT"})
    assert isinstance(refused.value, httpx.ConnectError)
    assert refused.value.address.is_loopback or refused.value.address.ipv4_mapped
    assert seen.requests == []


async def test_an_octal_address_never_gets_as_far_as_a_connection(port: int, seen: Seen) -> None:
    """httpx refuses a dotted address with a leading zero itself (it will not guess octal),
    so it never reaches the connection check; the gateway refuses it at acceptance."""
    async with safe_http_client(allowed=(), timeout=TIMEOUT) as client:
        with pytest.raises(httpx.InvalidURL):
            await client.post(f"http://0177.0.0.1:{port}/hook", json={})
    assert seen.requests == []


async def test_a_name_is_refused_if_any_of_its_addresses_is(port: int, seen: Seen) -> None:
    # Allowing only ::1 leaves localhost's 127.0.0.1 refused.
    async with safe_http_client(allowed=parse_networks("::1/128"), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeAddress, match=r"localhost: it resolves to 127\.0\.0\.1"):
            await client.post(f"http://localhost:{port}/hook", json={})
    assert seen.requests == []


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    async with safe_http_client(allowed=LOCAL, timeout=TIMEOUT) as client:
        with pytest.raises(httpx.ConnectError, match="cannot resolve") as raised:
            await client.post("http://no-such-host.invalid/hook", json={})
    assert not isinstance(raised.value, UnsafeAddress)


@pytest.mark.parametrize(
    "form",
    [form for form in REFUSED_FORMS if "7f00:1" not in form and "::ffff" not in form]
    + ["http://[::ffff:127.0.0.1]:{port}/hook"],
)
async def test_an_allowed_callback_goes_through(
    form: str, port: int, port6: int, seen: Seen
) -> None:
    url = _url(form, port, port6)
    async with safe_http_client(allowed=LOCAL, timeout=TIMEOUT) as client:
        response = await client.post(url, json={"status": "SENT"})
    assert response.status_code == 204
    assert len(seen.requests) == 1
    method, path, host = seen.requests[0]
    assert (method, path) == ("POST", "/hook")
    # Connected to the checked address; the request still names the URL's host.
    assert host == httpx.URL(url).netloc.decode()


async def test_a_redirect_is_not_followed(port: int, seen: Seen) -> None:
    async with safe_http_client(allowed=LOCAL, timeout=TIMEOUT) as client:
        response = await client.post(f"http://127.0.0.1:{port}/redirect", json={})
        assert response.status_code == 302
        assert response.headers["Location"] == "http://169.254.169.254/latest/meta-data/"
        with pytest.raises(UnsafeAddress, match=r"169\.254\.169\.254"):
            await client.post(response.headers["Location"], json={})
    assert [path for _, path, _ in seen.requests] == ["/redirect"]


async def test_environment_proxies_are_not_used(
    port: int, seen: Seen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would resolve the name itself, after our check: it must not be used."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    async with safe_http_client(allowed=(), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeAddress):
            await client.post(f"http://127.0.0.1:{port}/hook", json={})
    async with safe_http_client(allowed=LOCAL, timeout=TIMEOUT) as client:
        assert (await client.post(f"http://127.0.0.1:{port}/hook", json={})).status_code == 204


def _certificates(directory: Path) -> tuple[Path, Path]:
    """A CA (its certificate file, to trust) and a server certificate and key for the name
    ``localhost`` only (one file): no IP address in it."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = build("localhost", "test CA", server_key, ca_key, ca=False)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_file = directory / "server.pem"
    server_file.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, server_file


@pytest.fixture
def tls_port(seen: Seen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An https receiver on 127.0.0.1 whose certificate names localhost, trusted by the
    clients made while it runs (httpx reads SSL_CERT_FILE)."""
    ca_file, server_file = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


async def test_tls_is_checked_against_the_host_name(tls_port: int, seen: Seen) -> None:
    """Connected to 127.0.0.1, but SNI and the certificate check are for localhost: the
    certificate names localhost only, so the same server by address fails verification."""
    async with safe_http_client(allowed=LOCAL, timeout=TIMEOUT) as client:
        response = await client.post(f"https://localhost:{tls_port}/hook", json={})
        assert response.status_code == 204
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(f"https://127.0.0.1:{tls_port}/hook", json={})
    assert seen.requests == [("POST", "/hook", f"localhost:{tls_port}")]
