"""services/gateway/key_cache.py on the real store: a key found active is read once a
while, revocation holds at once here and within the cache's time after a CLI revoke."""

from __future__ import annotations

import asyncio

from services.gateway.key_cache import KeyCache
from shared.api_keys import create_key, revoke_key
from shared.service import Runtime


async def reads_of(rt: Runtime) -> int:
    """Reads of this test's ``api_keys`` so far (``top``: per collection, as on mongod)."""
    top = await rt.store.client.admin.command("top")
    return int(
        top["totals"].get(f"{rt.store.db.name}.api_keys", {}).get("queries", {}).get("count", 0)
    )


async def test_a_key_found_active_is_read_once_while_it_is_kept(runtime: Runtime) -> None:
    key, _ = await create_key(runtime.store, tenant="cache")
    cache = KeyCache(runtime.store, seconds=60)
    before = await reads_of(runtime)
    found = [await cache.find(key) for _ in range(20)]
    assert {k.tenant if k else None for k in found} == {"cache"}
    assert await reads_of(runtime) - before == 1


async def test_unknown_keys_are_read_every_time(runtime: Runtime) -> None:
    cache = KeyCache(runtime.store, seconds=60)
    before = await reads_of(runtime)
    assert [await cache.find("ep_live_made-up") for _ in range(3)] == [None] * 3
    assert await reads_of(runtime) - before == 3


async def test_a_key_revoked_here_is_refused_at_once(runtime: Runtime) -> None:
    key, stored = await create_key(runtime.store, tenant="cache")
    cache = KeyCache(runtime.store, seconds=60)
    assert await cache.find(key) is not None
    await revoke_key(runtime.store, stored.key_id)
    cache.forget(stored.key_id)
    assert await cache.find(key) is None


async def test_a_key_revoked_elsewhere_is_refused_once_its_time_is_up(runtime: Runtime) -> None:
    key, stored = await create_key(runtime.store, tenant="cache")
    cache = KeyCache(runtime.store, seconds=0.5)
    assert await cache.find(key) is not None
    await revoke_key(runtime.store, stored.key_id)  # the CLI's way: straight to the store
    assert await cache.find(key) is not None  # still taken on trust...
    await asyncio.sleep(0.6)
    assert await cache.find(key) is None  # ...not past the cache's time
