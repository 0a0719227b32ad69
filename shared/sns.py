"""Amazon SNS messages delivered over HTTPS: decode them, and prove they come from SNS.

SNS cannot send an API key; what proves a message is its signature, made with the key of the
X.509 certificate at its ``SigningCertURL`` (AWS, "Verifying the signatures of Amazon SNS
messages"). ``SnsVerifier.verify`` checks, cheapest first, so that a stranger's message
costs no certificate fetch:

    TopicArn one we accept  ->  SigningCertURL (and SubscribeURL) https on an SNS host
        ->  signature over the string to sign, SignatureVersion 1 (SHA1) or 2 (SHA256)
            with the certificate's RSA key (PKCS #1 v1.5)

The certificate is trusted because it came over verified TLS from an SNS host; it is fetched
without following redirects, up to a size limit, and kept in memory by URL (SNS signs with
one certificate for months).

Errors (``raise ... from e`` at this edge; the webhook maps each to an HTTP answer):

    InputError
    └── SnsRefused                  the message must not be acted on
        ├── SnsMessageInvalid       not an SNS message: not JSON, a field missing, unknown Type
        ├── SnsTopicUnknown         a TopicArn we do not accept
        ├── SnsUrlInvalid           SigningCertURL or SubscribeURL not https on an SNS host
        └── SnsSignatureInvalid     unknown SignatureVersion, bad signature, unusable certificate
    UpstreamUnavailable             the SNS host did not answer (5xx, timeout): try again later
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import certifi
import httpx
import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.errors import InputError, UpstreamUnavailable

__all__ = [
    "SnsMessage",
    "SnsMessageInvalid",
    "SnsNotification",
    "SnsRefused",
    "SnsSignatureInvalid",
    "SnsSubscriptionConfirmation",
    "SnsTopicUnknown",
    "SnsUnsubscribeConfirmation",
    "SnsUrlInvalid",
    "SnsVerifier",
    "check_sns_url",
    "decode_sns_message",
    "string_to_sign",
    "unwrap_ses_event",
    "verify_signature",
]

# A signing certificate is under 2 KB of PEM; a confirmation's answer is a short XML document.
_MAX_CERTIFICATE_BYTES: Final = 64 * 1024
_MAX_CONFIRMATION_BYTES: Final = 64 * 1024
_TIMEOUT_SECONDS: Final = 5.0
# Certificates kept; SNS has one per region at a time, so a few cover every topic we accept.
_MAX_CACHED: Final = 16

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# What no URL we fetch may hold: urlsplit and httpx could read it differently.
_UNSAFE_URL: Final = re.compile(r"[^\x21-\x7e]|\\")


class SnsRefused(InputError):
    """A message that must not be acted on."""


class SnsMessageInvalid(SnsRefused):
    pass


class SnsTopicUnknown(SnsRefused):
    pass


class SnsUrlInvalid(SnsRefused):
    pass


class SnsSignatureInvalid(SnsRefused):
    pass


# The fields SNS signs, named as SNS spells them. Unknown fields are ignored (SNS adds some,
# ``MessageAttributes`` and ``UnsubscribeURL`` among them): they are not signed, so nothing
# reads them.
class _Signed(msgspec.Struct, frozen=True, kw_only=True, rename="pascal", tag_field="Type"):
    TYPE: ClassVar[str]

    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    signature_version: str
    signature: str
    signing_cert_url: str = msgspec.field(name="SigningCertURL")


class SnsNotification(_Signed, frozen=True, kw_only=True, tag="Notification"):
    TYPE: ClassVar[str] = "Notification"

    # Signed only when present: SNS omits it when the publisher gave none.
    subject: str | None = None


class SnsSubscriptionConfirmation(
    _Signed, frozen=True, kw_only=True, tag="SubscriptionConfirmation"
):
    TYPE: ClassVar[str] = "SubscriptionConfirmation"

    subscribe_url: str = msgspec.field(name="SubscribeURL")
    token: str


class SnsUnsubscribeConfirmation(_Signed, frozen=True, kw_only=True, tag="UnsubscribeConfirmation"):
    TYPE: ClassVar[str] = "UnsubscribeConfirmation"

    subscribe_url: str = msgspec.field(name="SubscribeURL")
    token: str


SnsMessage = SnsNotification | SnsSubscriptionConfirmation | SnsUnsubscribeConfirmation

_decoder: Final[msgspec.json.Decoder[SnsMessage]] = msgspec.json.Decoder(SnsMessage)


def decode_sns_message(body: bytes) -> SnsMessage:
    """The SNS message in an HTTP body (SNS sends it as ``text/plain`` JSON)."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as e:
        raise SnsMessageInvalid(f"not an SNS message: {e}") from e


def string_to_sign(message: SnsMessage) -> bytes:
    """What SNS signs: ``name\\nvalue\\n`` for each signed field, in this order per type."""
    fields: list[tuple[str, str]] = [
        ("Message", message.message),
        ("MessageId", message.message_id),
    ]
    match message:
        case SnsNotification(subject=subject):
            if subject is not None:
                fields.append(("Subject", subject))
            fields += [("Timestamp", message.timestamp), ("TopicArn", message.topic_arn)]
        case SnsSubscriptionConfirmation() | SnsUnsubscribeConfirmation():
            fields += [
                ("SubscribeURL", message.subscribe_url),
                ("Timestamp", message.timestamp),
                ("Token", message.token),
                ("TopicArn", message.topic_arn),
            ]
    fields.append(("Type", message.TYPE))
    return "".join(f"{name}\n{value}\n" for name, value in fields).encode()


def check_sns_url(url: str, host_pattern: re.Pattern[str]) -> None:
    """An https URL on a host ``host_pattern`` matches in full, with ``:port`` appended when
    the URL names one (SNS's never do, so the default pattern refuses every port)."""
    if _UNSAFE_URL.search(url):
        raise SnsUrlInvalid(f"{url!r} holds characters a URL from SNS never holds")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise SnsUrlInvalid(f"{url!r} is not a URL") from e
    if parts.scheme != "https" or not host or parts.username is not None:
        raise SnsUrlInvalid(f"{url!r} is not an https URL of a host")
    authority = host if port is None else f"{host}:{port}"
    if not host_pattern.fullmatch(authority):
        raise SnsUrlInvalid(f"{url!r} is not on an SNS host")


def verify_signature(message: SnsMessage, certificate: x509.Certificate) -> None:
    """The message's signature, checked with the certificate's key."""
    algorithm = _HASHES.get(message.signature_version)
    if algorithm is None:
        raise SnsSignatureInvalid(f"unknown SignatureVersion {message.signature_version!r}")
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SnsSignatureInvalid("the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsSignatureInvalid("the signing certificate's key is not an RSA key")
    try:
        signature = base64.b64decode(message.signature, validate=True)
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error) as e:
        raise SnsSignatureInvalid("the signature does not match the message") from e


class SnsVerifier:
    """Verifies messages for the topics we accept; keeps their signing certificates.

    Holds no connection (each fetch opens its own: they are rare), so it can be made before
    the event loop runs. ``ca_file`` adds certificate authorities to the public ones, for a
    private SNS-compatible endpoint or a test's own.
    """

    def __init__(
        self, *, topics: Collection[str], host_pattern: str, ca_file: str | None = None
    ) -> None:
        self.topics = frozenset(topics)
        self.host_pattern = re.compile(host_pattern)
        self._tls = ssl.create_default_context(cafile=certifi.where())
        if ca_file:
            self._tls.load_verify_locations(cafile=ca_file)
        self._certificates: dict[str, x509.Certificate] = {}
        # One fetch at a time: a burst of messages signed with a new certificate fetches it once.
        self._fetching = asyncio.Lock()

    async def verify(self, message: SnsMessage) -> None:
        """Raises an ``SnsRefused`` unless SNS sent this message for a topic we accept."""
        if message.topic_arn not in self.topics:
            raise SnsTopicUnknown(f"messages of topic {message.topic_arn!r} are not accepted")
        check_sns_url(message.signing_cert_url, self.host_pattern)
        if not isinstance(message, SnsNotification):
            check_sns_url(message.subscribe_url, self.host_pattern)
        if message.signature_version not in _HASHES:
            raise SnsSignatureInvalid(f"unknown SignatureVersion {message.signature_version!r}")
        verify_signature(message, await self.certificate(message.signing_cert_url))

    async def confirm(self, message: SnsSubscriptionConfirmation) -> None:
        """Confirm the subscription: GET its SubscribeURL (after ``verify``).

        Any answer but 200 is ``UpstreamUnavailable`` (the webhook answers 503): the token
        may still be good, and SNS's console or ``ConfirmSubscription`` can take it later."""
        status, _ = await self._get(message.subscribe_url, _MAX_CONFIRMATION_BYTES)
        if status != 200:
            raise UpstreamUnavailable(f"confirming the subscription answered {status}")

    async def certificate(self, url: str) -> x509.Certificate:
        found = self._certificates.get(url)
        if found is not None:
            return found
        async with self._fetching:
            found = self._certificates.get(url)
            if found is None:
                status, pem = await self._get(url, _MAX_CERTIFICATE_BYTES)
                if status != 200:
                    raise SnsSignatureInvalid(f"no signing certificate at {url}: {status}")
                if len(pem) > _MAX_CERTIFICATE_BYTES:
                    raise SnsSignatureInvalid(f"the signing certificate at {url} is too large")
                found = _load_certificate(pem)
                if len(self._certificates) >= _MAX_CACHED:
                    del self._certificates[next(iter(self._certificates))]
                self._certificates[url] = found
        return found

    async def _get(self, url: str, limit: int) -> tuple[int, bytes]:
        """The status and body of a GET, reading no more than ``limit`` + 1 bytes; redirects
        are not followed. A 5xx or no answer is ``UpstreamUnavailable``."""
        try:
            async with (
                httpx.AsyncClient(verify=self._tls, timeout=_TIMEOUT_SECONDS) as http,
                http.stream("GET", url) as response,
            ):
                if response.status_code >= 500:
                    raise UpstreamUnavailable(f"GET {url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        break
                return response.status_code, bytes(body)
        except httpx.HTTPError as e:
            raise UpstreamUnavailable(f"GET {url} failed: {e!r}") from e


def _load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise SnsSignatureInvalid("the signing certificate is not a PEM certificate") from e


def unwrap_ses_event(body: str) -> dict[str, Any] | None:
    """The SES event a body holds: an SNS Notification's ``Message`` (as the webhook and an
    SQS queue get it), or the event itself (raw message delivery); None when it holds none."""
    try:
        outer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(outer, dict):
        return None
    if outer.get("Type") == "Notification" and isinstance(outer.get("Message"), str):
        try:
            outer = msgspec.json.decode(outer["Message"])
        except msgspec.DecodeError:
            return None
        if not isinstance(outer, dict):
            return None
    if "eventType" in outer or "notificationType" in outer:
        return outer
    return None
