"""A submission's file when it is already in the bucket: ``source: {"s3_uri": ...}``.

A tenant may name only objects of our own bucket under its own prefix,
``uploads/<tenant>/`` (where the gateway's uploads go too): anything else is
``SOURCE_NOT_ALLOWED``, so an API key cannot point us at another tenant's files or at
arbitrary buckets. The object is checked with one ``HeadObject``: it must exist
(``SOURCE_NOT_FOUND``), hold something (``EMPTY_FILE``) and respect the upload limit
(``FILE_TOO_LARGE``). ``read_source`` streams its content (for ``validate_only``).
botocore's errors become ``UpstreamUnavailable`` here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Final

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from services.gateway.errors import ApiError, Code
from shared.documents import S3Location
from shared.errors import UpstreamUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["SourceObject", "find_source", "read_source", "tenant_prefix"]

FIELD: Final = "source.s3_uri"
_SCHEME: Final = "s3://"
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})
_CHUNK_BYTES: Final = 256 * 1024


class SourceObject(msgspec.Struct, frozen=True, kw_only=True):
    location: S3Location
    size: int
    # Changes whenever the content does: what an Idempotency-Key's fingerprint covers.
    etag: str


def tenant_prefix(tenant: str) -> str:
    """Where a tenant's files live in the bucket (tenant names hold no '/')."""
    return f"uploads/{tenant}/"


def _parse(uri: str) -> S3Location:
    bucket, _, key = uri.removeprefix(_SCHEME).partition("/")
    if not uri.startswith(_SCHEME) or not bucket or not key:
        raise ApiError(
            Code.VALIDATION_ERROR,
            "source.s3_uri must look like s3://<bucket>/<key>",
            details={"field": FIELD, "value": uri[:1024]},
        )
    return S3Location(bucket=bucket, key=key)


async def find_source(
    s3: S3Client, uri: str, *, bucket: str, tenant: str, max_bytes: int
) -> SourceObject:
    location = _parse(uri)
    prefix = tenant_prefix(tenant)
    if location.bucket != bucket or not location.key.startswith(prefix):
        raise ApiError(
            Code.SOURCE_NOT_ALLOWED,
            f"source.s3_uri must name an object under s3://{bucket}/{prefix}",
            details={"field": FIELD, "value": uri[:1024]},
        )
    try:
        head = await s3.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in _MISSING:
            raise ApiError(
                Code.SOURCE_NOT_FOUND,
                f"no object {uri!r}",
                details={"field": FIELD, "value": uri},
            ) from e
        raise UpstreamUnavailable(f"S3 head object: {e}") from e
    except BotoCoreError as e:
        raise UpstreamUnavailable(f"S3 head object: {e}") from e
    size = head["ContentLength"]
    if size > max_bytes:
        raise ApiError(
            Code.FILE_TOO_LARGE,
            f"the file is larger than {max_bytes} bytes",
            details={"field": FIELD, "max_bytes": max_bytes},
        )
    if size == 0:
        raise ApiError(Code.EMPTY_FILE, "the file is empty", details={"field": FIELD})
    return SourceObject(location=location, size=size, etag=head["ETag"])


async def read_source(s3: S3Client, location: S3Location) -> AsyncGenerator[bytes, None]:
    """The object's content, chunk by chunk; use it under ``contextlib.aclosing``."""
    where = f"s3://{location.bucket}/{location.key}"
    try:
        response = await s3.get_object(Bucket=location.bucket, Key=location.key)
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(_CHUNK_BYTES):
                yield chunk
    except (ClientError, BotoCoreError) as e:
        raise UpstreamUnavailable(f"reading {where}: {e}") from e
