"""Managing API keys: the admin endpoints, and the operator's CLI straight on the store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from services.gateway.deps import GatewayDeps
from shared.api_keys import hash_key
from shared.settings import GatewaySettings
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory, bearer

OTHER_TENANT = "globex"


async def test_admin_endpoints(make_client: ClientFactory, deps: GatewayDeps) -> None:
    admin = await issue_key(deps.store, TENANT, admin=True)
    foreign = await issue_key(deps.store, OTHER_TENANT, admin=True)
    async with make_client(api_key=admin) as client:
        created = await client.post("/api/v1/admin/keys", json={"mode": "test", "label": "staging"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["key"].startswith("ep_test_")
        assert (body["tenant"], body["mode"], body["admin"], body["label"]) == (
            TENANT,
            "test",
            False,
            "staging",
        )
        assert body["key"].startswith(body["prefix"])

        listed = (await client.get("/api/v1/admin/keys")).json()["items"]
        # The fixture's key, the admin key and the new one: never another tenant's.
        assert len(listed) == 3
        assert {k["tenant"] for k in listed} == {TENANT}
        assert listed[0]["id"] == body["id"]
        assert all("key" not in k for k in listed)
        assert body["key"] not in str(listed)

        bad = await client.post("/api/v1/admin/keys", json={"mode": "prod"})
        assert bad.status_code == 400
        unknown_field = await client.post("/api/v1/admin/keys", json={"tenant": OTHER_TENANT})
        assert unknown_field.status_code == 400

        # The new key works, and is refused the moment this gateway revokes it (although
        # it has just taken the key on trust, services/gateway/key_cache.py).
        as_new = bearer(body["key"])
        assert (await client.get("/api/v1/transactions", headers=as_new)).status_code == 200
        revoked = await client.post(f"/api/v1/admin/keys/{body['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        refused = await client.get("/api/v1/transactions", headers=as_new)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
        again = await client.post(f"/api/v1/admin/keys/{body['id']}/revoke")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]

        missing = await client.post("/api/v1/admin/keys/nope/revoke")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "KEY_NOT_FOUND"

    # Another tenant's admin cannot see, nor revoke, nor tell these keys from missing ones.
    async with make_client(api_key=foreign) as client:
        theirs = (await client.get("/api/v1/admin/keys")).json()["items"]
        assert [k["tenant"] for k in theirs] == [OTHER_TENANT]
        foreign_revoke = await client.post(f"/api/v1/admin/keys/{listed[1]['id']}/revoke")
        absent_revoke = await client.post("/api/v1/admin/keys/nope/revoke")
    assert foreign_revoke.status_code == absent_revoke.status_code == 404
    assert foreign_revoke.json()["error"]["code"] == absent_revoke.json()["error"]["code"]
    assert (await deps.store.api_keys.find_one({"key_id": listed[1]["id"]}))["revoked_at"] is None


async def _cli(settings: GatewaySettings, cwd: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "email-platform"),
        "keys",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={
            **os.environ,
            "MONGODB_URI": settings.mongodb_uri,
            "MONGODB_DB": settings.mongodb_db,
            "COLUMNS": "200",
        },
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_creates_lists_and_revokes_keys(
    make_client: ClientFactory,
    deps: GatewayDeps,
    gateway_settings: GatewaySettings,
    tmp_path: Path,
) -> None:
    # In an empty directory: no var/stack.json to fall back on.
    code, out, err = await _cli(
        gateway_settings, tmp_path, "create", "--tenant", "initech", "--json"
    )
    assert code == 0, out + err
    made = json.loads(out)
    # What POST /api/v1/admin/keys answers.
    assert set(made) == {"key", "id", "prefix", "tenant", "mode", "admin", "label", "created_at"}
    assert (made["tenant"], made["mode"]) == ("initech", "live")
    key = made["key"]
    assert key.startswith("ep_live_")

    code, out, err = await _cli(
        gateway_settings, tmp_path, "create", "--tenant", "initech", "--mode", "test", "--admin"
    )
    assert code == 0, out + err
    test_key = next(line for line in out.splitlines() if line.startswith("ep_test_"))
    assert "admin" in out

    code, _, err = await _cli(gateway_settings, tmp_path, "create", "--tenant", "Not A Name")
    assert code == 1
    assert "tenant" in err

    stored = await deps.store.api_keys.find({}).to_list(None)
    # The gateway fixture's key (TENANT) and the CLI's two.
    assert sorted(d["_id"] for d in stored if d["tenant"] == "initech") == sorted(
        [hash_key(key), hash_key(test_key)]
    )
    assert key not in repr(stored)
    assert test_key not in repr(stored)

    code, out, err = await _cli(gateway_settings, tmp_path, "list", "--json")
    assert code == 0, out + err
    listed = json.loads(out)["items"]
    assert key not in out
    assert test_key not in out
    initech = [k for k in listed if k["tenant"] == "initech"]
    assert [(k["mode"], k["admin"], k["revoked_at"]) for k in initech] == [
        ("test", True, None),
        ("live", False, None),
    ]
    code, table, _ = await _cli(gateway_settings, tmp_path, "list", "--tenant", "initech")
    assert code == 0
    assert initech[0]["id"] in table
    assert initech[1]["prefix"] in table
    assert TENANT not in table
    assert key not in table

    # The CLI's key works at the gateway, until the CLI revokes it: straight in the store,
    # so the gateway refuses it once it stops taking it on trust (API_KEY_CACHE_SECONDS).
    async with make_client(api_key=key) as client:
        assert (await client.get("/api/v1/transactions")).status_code == 200
        code, out, err = await _cli(gateway_settings, tmp_path, "revoke", initech[1]["id"])
        assert code == 0, out + err
        assert "revoked" in out
        deadline = time.monotonic() + gateway_settings.api_key_cache_seconds + 2
        while (status := (await client.get("/api/v1/transactions")).status_code) == 200:
            assert time.monotonic() < deadline, "the revoked key is still accepted"
            await asyncio.sleep(0.1)
        assert status == 401

    code, out, _ = await _cli(gateway_settings, tmp_path, "list", "--json")
    revoked = [k for k in json.loads(out)["items"] if k["id"] == initech[1]["id"]]
    assert revoked[0]["revoked_at"] is not None

    code, _, err = await _cli(gateway_settings, tmp_path, "revoke", "no-such-key")
    assert code == 1
    assert "No API key" in err
