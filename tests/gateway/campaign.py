"""A campaign of ``TENANT`` read by the real ingest, for the gateway tests that need messages.

The file goes to S3 (moto) under the tenant's prefix, the transaction is recorded in ACCEPT
as a submission records it, and ``IngestActor.handle`` reads it as the ingest service would.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.gateway.deps import GatewayDeps
from services.ingest.ingestion import IngestActor
from shared.documents import S3Location, StatusEntry, Template, Transaction, to_document
from shared.events import TxAccepted
from shared.settings import GatewaySettings, IngestSettings, load_settings
from shared.status import TxStatus
from stack.launcher import StackInfo
from tests.conftest import settings_for
from tests.gateway.conftest import TENANT

__all__ = ["ingest", "insert_template", "run_ingest"]


async def insert_template(deps: GatewayDeps, tenant: str = TENANT) -> str:
    template = Template(
        id=uuid.uuid4().hex,
        tenant=tenant,
        name="n",
        subject="Hi {{ first_name }}",
        text="Hello",
        placeholders=["first_name"],
        created_at=datetime.now(UTC),
    )
    await deps.store.templates.insert_one(to_document(template))
    return template.id


async def run_ingest(
    deps: GatewayDeps, settings: GatewaySettings, stack_info: StackInfo, transaction_id: str
) -> None:
    ingest_settings = load_settings(
        IngestSettings, settings_for(stack_info, settings.mongodb_db, BATCH_SIZE="2")
    )
    await IngestActor(deps.store, deps.broker, deps.s3, ingest_settings).handle(
        TxAccepted(transaction_id=transaction_id)
    )


async def ingest(
    deps: GatewayDeps,
    settings: GatewaySettings,
    stack_info: StackInfo,
    body: bytes,
    *,
    template_id: str | None = None,
    callback_url: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """A transaction of ``TENANT`` whose file ``body`` the real ingest has read."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    key = f"uploads/{TENANT}/{tx_id}.csv"
    await deps.s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
    tx = Transaction(
        id=tx_id,
        tenant=TENANT,
        status=TxStatus.ACCEPT,
        template_id=template_id or await insert_template(deps),
        source=S3Location(bucket=settings.s3_bucket, key=key),
        callback_url=callback_url,
        metadata=metadata or {},
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    await run_ingest(deps, settings, stack_info, tx_id)
    return tx_id
