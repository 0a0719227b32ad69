"""What the tests share: one embedded stack per session, fresh databases per test.

The stack is real (nats-server, the Mongo-wire store, moto, the SES simulator) and started
by the project's own launcher, exactly as ``make run`` starts it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session
from pymongo import AsyncMongoClient

from shared.api_keys import KeyMode, create_key
from shared.service import Runtime, open_runtime
from shared.settings import ServiceSettings, load_settings
from shared.store import Store
from stack.launcher import Stack, StackInfo
from stack.processes import free_port

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

# The CLI's rich consoles take their width from COLUMNS when cli.main is imported, which
# may be before any test runs (and without a terminal: 80 columns): wide enough here that
# tables and messages are never wrapped or cut, whatever imports it first.
os.environ["COLUMNS"] = "200"

# The modules that take longest (most run stacks and crashes of their own), in this order
# before all others: ``make test`` hands each of two workers a module at a time, and a long
# one picked up last keeps one worker busy while the other has nothing left (xdist's own
# reordering puts the modules with the most tests first, and these have few). Measured
# with ``pytest --durations=0``; a module missing here only runs in collection order.
LONGEST_MODULES = (
    "tests/integration/test_scale_out.py",
    "tests/integration/test_sender_crash.py",
    "tests/chaos/test_chaos.py",
    "tests/integration/test_graceful_shutdown.py",
    "tests/unit/test_hostile_templates.py",
    "tests/gateway/test_malformed_requests.py",
    "tests/integration/test_ingest_crash.py",
    "tests/tracker/test_tracker_callbacks.py",
    "tests/dashboard/test_dashboard_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: n for n, module in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(scope="session")
def stack_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    root = tmp_path_factory.mktemp("stack")
    with (
        Stack(root, gateway_port=free_port(), ses_sink="sqs") as info,
        pytest.MonkeyPatch.context() as env,
    ):
        # botocore reads credentials and region from the environment, as in production.
        for name, value in info.env().items():
            if name.startswith("AWS_"):
                env.setenv(name, value)
        yield info


# The key of the unsubscribe links, shared by every service of a test as by a real platform.
UNSUBSCRIBE_SECRET = "test-unsubscribe-secret-of-at-least-32-characters"


def settings_for(info: StackInfo, db: str, **extra: str) -> dict[str, str]:
    """The environment a service would get on this stack, with its own database."""
    return {
        **info.env(),
        "MONGODB_DB": db,
        "LOG_FORMAT": "console",
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "PUBLIC_BASE_URL": info.gateway_url,
        **extra,
    }


async def issue_key(
    store: Store, tenant: str, *, mode: KeyMode = KeyMode.LIVE, admin: bool = False
) -> str:
    """A new API key of ``tenant`` in ``store``'s database, as a client would hold it."""
    key, _ = await create_key(store, tenant=tenant, mode=mode, admin=admin)
    return key


@pytest.fixture
async def sqs(stack_info: StackInfo) -> AsyncIterator[SQSClient]:
    """An SQS client of the stack's moto."""
    async with get_session().create_client(
        "sqs",
        region_name=stack_info.aws_region,
        endpoint_url=stack_info.aws_endpoint_url,
        aws_access_key_id=stack_info.aws_access_key_id,
        aws_secret_access_key=stack_info.aws_secret_access_key,
    ) as client:
        yield client


@pytest.fixture
def db_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(stack_info: StackInfo, db_name: str) -> ServiceSettings:
    return load_settings(ServiceSettings, settings_for(stack_info, db_name))


async def drop_database(client: AsyncMongoClient[dict[str, Any]], name: str) -> None:
    """Drop a test's database, its collections emptied first: SecantusDB drops a collection
    at about 0.6 ms a document and deletes at 0.1 (24,000 messages: 16 s against 3 s)."""
    db = client[name]
    for collection in await db.list_collection_names():
        await db[collection].delete_many({})
    await client.drop_database(name)


@pytest.fixture
async def runtime(settings: ServiceSettings) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as exits:
        rt = await open_runtime("test", settings, exits)
        yield rt
        await drop_database(rt.store.client, settings.mongodb_db)


@pytest.fixture(scope="session")
def examples() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"
