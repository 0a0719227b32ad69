"""Streaming an upload into S3 without ever holding the whole file (ARCHITECTURE §5).

``S3Upload`` takes the bytes as they arrive and sends them in parts of ``part_bytes``
through an S3 multipart upload, started when the first part is full. A file that ends
before filling one part goes up with one ``PutObject``. Nothing is visible in the bucket
until ``complete``; ``abort`` throws away whatever was sent, ``discard`` a completed
object nobody will read (a duplicate of an idempotent submission). ``sha256`` is the
content's digest, computed as it streams. botocore's errors become ``UpstreamUnavailable``
here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import UpstreamUnavailable
from shared.log import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3Upload"]

log = get_logger("gateway.upload")

_CONTENT_TYPE = "text/csv"


@contextmanager
def _reachable(what: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as e:
        raise UpstreamUnavailable(f"S3 {what}: {e}") from e


class S3Upload:
    def __init__(self, s3: S3Client, bucket: str, key: str, part_bytes: int) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._digest = hashlib.sha256()
        self.size = 0

    @property
    def parts(self) -> int:
        return len(self._parts)

    @property
    def sha256(self) -> str:
        """The hex digest of everything written so far."""
        return self._digest.hexdigest()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self._digest.update(data)
        self.size += len(data)
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            await self._send_part(part)

    async def complete(self) -> None:
        if self._upload_id is None:
            with _reachable("put object"):
                await self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=bytes(self._buffer),
                    ContentType=_CONTENT_TYPE,
                )
            self._buffer.clear()
            return
        if self._buffer:
            await self._send_part(bytes(self._buffer))
            self._buffer.clear()
        with _reachable("complete multipart upload"):
            await self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        """Throw away what was sent; never raises (it runs while another error unwinds)."""
        self._buffer.clear()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id
            )
        except (BotoCoreError, ClientError) as e:
            # The bucket's lifecycle rule for incomplete uploads cleans up after us.
            log.warning("abort multipart upload failed", key=self.key, error=str(e))

    async def discard(self) -> None:
        """Delete the completed object; never raises (the lifecycle of the bucket is the
        fallback, and the caller is answering already)."""
        try:
            await self._s3.delete_object(Bucket=self.bucket, Key=self.key)
        except (BotoCoreError, ClientError) as e:
            log.warning("delete of a discarded upload failed", key=self.key, error=str(e))

    async def _send_part(self, part: bytes) -> None:
        if self._upload_id is None:
            with _reachable("create multipart upload"):
                created = await self._s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=_CONTENT_TYPE
                )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        with _reachable("upload part"):
            sent = await self._s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})
