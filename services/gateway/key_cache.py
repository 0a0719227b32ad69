"""The API keys this gateway found lately, so that requests cost the store no read.

Every ``/api/v1`` request is authenticated by its key: without a cache that is one store read
per request, and a request waits for it behind whatever the store is busy with. A key found
active is answered from a read at most ``API_KEY_CACHE_SECONDS`` (one second by default) old,
refreshed in the background before that (services/gateway/recent_reads.py). Unknown and
revoked keys are not kept: they are rare, and a stream of made-up keys would fill the cache.

Revocation therefore holds at once on the replica that revoked (it forgets the key), and
within ``API_KEY_CACHE_SECONDS`` on every other replica and after a revocation from the CLI,
straight to the store. Keys are kept by their hash, as the store keeps them.
"""

from __future__ import annotations

from services.gateway.recent_reads import RecentReads
from shared.api_keys import ApiKey, find_active_hash, hash_key
from shared.store import Store

__all__ = ["KeyCache"]


class KeyCache:
    def __init__(self, store: Store, seconds: float) -> None:
        self._found: RecentReads[str, ApiKey] = RecentReads(
            lambda hashed: find_active_hash(store, hashed),
            refresh_after=seconds / 10,
            max_age=seconds,
        )

    async def find(self, key: str) -> ApiKey | None:
        """The stored key ``key`` is, unless it is unknown or revoked (``find_active_key``)."""
        return await self._found.get(hash_key(key))

    def forget(self, key_id: str) -> None:
        """The key named ``key_id`` was revoked here: stop accepting it now."""
        self._found.forget_where(lambda found: found.key_id == key_id)
