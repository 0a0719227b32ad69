"""The API keys this gateway found lately, so that most requests cost the store no read.

Every ``/api/v1`` request is authenticated by its key: without a cache that is one store read
per request, half of what a status poll costs the store. A key found active is kept for
``KEY_CACHE_SECONDS`` (one second by default). Unknown and revoked keys are not kept: they
are rare, and an unknown key kept would let a stream of made-up keys fill the cache.

Revocation therefore takes effect at once on the replica that revoked (it forgets the key),
and within ``KEY_CACHE_SECONDS`` on every other replica and after a revocation from the CLI,
straight to the store. Reads of one key that miss the cache together share one store read
(services/gateway/coalesce.py).
"""

from __future__ import annotations

from typing import Final

from cachetools import TTLCache

from services.gateway.coalesce import Coalescer
from shared.api_keys import ApiKey, find_active_key, hash_key
from shared.store import Store

__all__ = ["KeyCache"]

# Far more keys than one gateway serves at once; the oldest go first when it is full.
_MAX_KEYS: Final = 10_000


class KeyCache:
    def __init__(self, store: Store, seconds: float) -> None:
        self._found: TTLCache[str, ApiKey] = TTLCache(maxsize=_MAX_KEYS, ttl=seconds)
        self._reads: Coalescer[str, ApiKey | None] = Coalescer(
            lambda key: find_active_key(store, key)
        )

    async def find(self, key: str) -> ApiKey | None:
        """The stored key ``key`` is, unless it is unknown or revoked (``find_active_key``)."""
        # By its hash, as the store keeps it: the cache holds no usable key.
        hashed = hash_key(key)
        found = self._found.get(hashed)
        if found is None:
            found = await self._reads.get(key)
            if found is not None:
                self._found[hashed] = found
        return found

    def forget(self, key_id: str) -> None:
        """The key named ``key_id`` was revoked here: stop accepting it now."""
        for hashed, found in list(self._found.items()):
            if found.key_id == key_id:
                del self._found[hashed]
