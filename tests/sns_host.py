"""SNS, played for tests: a certificate authority, an HTTPS host serving the signing
certificate and the SubscribeURL, and messages signed as SNS signs them.

The string to sign is written out here from AWS's description, not taken from
``shared.sns``. A gateway trusts the host with ``sns_ca_file`` = ``FakeSns.ca_file`` and
``sns_cert_host_pattern`` = ``HOST_PATTERN``.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
# The gateway's setting that takes the fake host for an SNS host.
HOST_PATTERN = r"127\.0\.0\.1:\d+"

# --- the certificates -------------------------------------------------------------------


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(
    name: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None = None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(ip))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns:
    """The HTTPS server standing in for SNS: what it serves and every path it was asked."""

    base_url: str
    ca_file: str
    signing_key: rsa.RSAPrivateKey
    signing_pem: bytes
    paths: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/SimpleNotificationService-test.pem"

    def asked(self, prefix: str) -> int:
        return sum(1 for path in self.paths if path.startswith(prefix))


@contextmanager
def serve_fake_sns(folder: Path) -> Iterator[FakeSns]:
    """A real HTTPS server on 127.0.0.1 with its own CA, serving an SNS signing certificate."""
    ca_key, server_key, signing_key = new_key(), new_key(), new_key()
    ca = _certificate("Test SNS CA", ca_key, ca=True)
    server = _certificate("127.0.0.1", server_key, (ca.subject, ca_key), ip="127.0.0.1")
    signing = _certificate("sns.amazonaws.com", signing_key, (ca.subject, ca_key))
    ca_file, chain, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(_pem(ca))
    chain.write_bytes(_pem(server))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    served: dict[str, tuple[int, bytes]] = {
        "/SimpleNotificationService-test.pem": (200, _pem(signing)),
        "/missing.pem": (404, b"not found"),
        "/broken.pem": (200, b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n"),
        "/huge.pem": (200, b"x" * 200_000),
        "/flaky.pem": (503, b"try later"),
        "/?Action=ConfirmSubscription": (200, b"<ConfirmSubscriptionResponse/>"),
    }
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", "/SimpleNotificationService-test.pem")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            prefix = next((p for p in served if self.path.startswith(p)), None)
            status, body = served[prefix] if prefix else (404, b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(chain, key_file)
    server_ = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_.socket = tls.wrap_socket(server_.socket, server_side=True)
    thread = threading.Thread(target=server_.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeSns(
            base_url=f"https://127.0.0.1:{server_.server_address[1]}",
            ca_file=str(ca_file),
            signing_key=signing_key,
            signing_pem=_pem(signing),
            paths=paths,
        )
    finally:
        server_.shutdown()
        server_.server_close()
        thread.join()


# --- signing as SNS does ----------------------------------------------------------------

_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def sign(message: dict[str, str], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, str]:
    """``message`` with its SNS signature: ``name\\nvalue\\n`` over the type's signed fields
    (Subject only when present), RSA PKCS #1 v1.5 with SHA1 (version 1) or SHA256 (2)."""
    names = _NOTIFICATION_FIELDS if message["Type"] == "Notification" else _CONFIRMATION_FIELDS
    text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
    # SignatureVersion 1 is SHA1 by definition: SNS still signs with it unless told otherwise.
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def notification(
    sns: FakeSns, event: dict[str, Any] | str, *, version: str = "1", **fields: str
) -> dict[str, str]:
    body = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SigningCertURL": sns.cert_url,
        "UnsubscribeURL": f"{sns.base_url}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:x",
        **fields,
    }
    return sign(body, sns.signing_key, version)


def confirmation(sns: FakeSns, kind: str = "SubscriptionConfirmation") -> dict[str, str]:
    token = uuid.uuid4().hex
    return sign(
        {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": (
                f"{sns.base_url}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
            ),
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SigningCertURL": sns.cert_url,
        },
        sns.signing_key,
    )
