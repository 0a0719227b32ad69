"""``email-platform``: run the platform, run one service, send a campaign, follow it,
manage API keys."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from pymongo.errors import ConnectionFailure
from rich.console import Console
from rich.table import Table

from cli.client import ApiError, PlatformClient
from shared.api_keys import ApiKey, KeyMode, create_key, list_keys, revoke_key
from shared.errors import PlatformError, StoreUnavailable
from shared.indexes import ensure_indexes
from shared.settings import ServiceSettings, load_settings
from shared.store import Store, connect_store
from stack.launcher import read_info
from stack.platform import LOCAL_TENANT, SERVICES, Platform, read_api_key

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
keys = typer.Typer(
    no_args_is_help=True,
    help="API keys, straight in the store (MONGODB_URI and MONGODB_DB, else var/stack.json).",
)
app.add_typer(keys, name="keys")
console = Console(highlight=False)

T = TypeVar("T")

VAR = Path("var")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

GatewayOption = Annotated[
    str | None,
    typer.Option("--gateway", help="Gateway URL (default: GATEWAY_URL, then var/stack.json)."),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key (default: EMAIL_PLATFORM_API_KEY, then var/stack.json).",
        show_default=False,
    ),
]


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Send the bundled demo campaign.")] = True,
    var: Annotated[Path, typer.Option(help="Where state and logs go.")] = VAR,
) -> None:
    """Start the embedded stack and every service; serve until Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    platform = Platform(var)
    console.print("[bold]Starting[/] NATS, the store, moto, the SES simulator and 5 services…")
    try:
        platform.start()
        assert platform.api_key is not None
        console.print(
            f"[green]Up[/]: API at {platform.gateway_url}/api/v1, docs at "
            f"{platform.gateway_url}/schema, logs in {var / 'stack' / 'logs'}"
        )
        console.print(
            f"API key of tenant '{LOCAL_TENANT}' (admin, live; new on every start, "
            f"also in {var / 'stack.json'}):"
        )
        print(platform.api_key)
        if demo:
            _send(
                platform.gateway_url,
                platform.api_key,
                EXAMPLES / "welcome.toml",
                EXAMPLES / "recipients.csv",
                callback_url=None,
                send_at=None,
                wait=True,
            )
        console.print("Serving. Press Ctrl-C to stop every process.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        # Stop first: the terminal (or a pipe) may already be gone.
        platform.stop()
        with contextlib.suppress(OSError):
            console.print("Stopped every process.")


@app.command()
def service(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")]) -> None:
    """Run one service in this process (the container entrypoint)."""
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    importlib.import_module(f"services.{name}.__main__").main()


@app.command()
def send(
    template: Annotated[
        Path, typer.Option(help="Template file (TOML: name, subject, html, text).")
    ],
    csv: Annotated[Path, typer.Option(help="Recipients CSV with an email column.")],
    callback_url: Annotated[str | None, typer.Option(help="POSTed on every status change.")] = None,
    send_at: Annotated[str | None, typer.Option(help="RFC 3339 time with offset.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the campaign until it is final.")] = False,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit a campaign: upload the template, then the CSV."""
    _send(
        _gateway(gateway),
        _api_key(api_key),
        template,
        csv,
        callback_url=callback_url,
        send_at=send_at,
        wait=wait,
    )


@app.command()
def status(
    transaction_id: str, gateway: GatewayOption = None, api_key: ApiKeyOption = None
) -> None:
    """Show a transaction's status and progress."""
    with PlatformClient(_gateway(gateway), api_key=_api_key(api_key)) as client:
        try:
            current = client.status(transaction_id)
            record = client.transaction(transaction_id)
        except ApiError as e:
            console.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
    progress = current["progress"]
    console.print(
        f"{transaction_id}: [bold]{current['status']}[/] "
        f"{progress['processed_messages']}/{progress['total_messages']} "
        f"({progress['percentage']}%), ETA {current['estimated_completion'] or '-'}"
    )
    _print_counts(record)


@app.command()
def cancel(
    transaction_id: str, gateway: GatewayOption = None, api_key: ApiKeyOption = None
) -> None:
    """Cancel what a transaction has not sent yet."""
    with PlatformClient(_gateway(gateway), api_key=_api_key(api_key)) as client:
        try:
            record = client.cancel(transaction_id)
        except ApiError as e:
            console.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
    console.print(
        f"{transaction_id}: cancel requested at {record['cancel_requested_at']} "
        f"(now {record['status']}; CANCELLED once sends in flight end)"
    )


@app.command()
def reschedule(
    transaction_id: str,
    send_at: Annotated[str, typer.Argument(help="RFC 3339 time with offset: the first slot's.")],
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Move a SCHEDULED transaction: its first slot to SEND_AT, the others alike."""
    with PlatformClient(_gateway(gateway), api_key=_api_key(api_key)) as client:
        try:
            record = client.reschedule(transaction_id, send_at)
        except ApiError as e:
            console.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
    schedule = record["schedule"] or {}
    console.print(
        f"{transaction_id}: {record['status']}, first slot at {schedule.get('first_slot_at')}, "
        f"last at {schedule.get('last_slot_at')}"
    )


def _send(
    gateway: str,
    api_key: str,
    template: Path,
    csv: Path,
    *,
    callback_url: str | None,
    send_at: str | None,
    wait: bool,
) -> None:
    with PlatformClient(gateway, api_key=api_key) as client:
        try:
            created = client.create_template(tomllib.loads(template.read_text("utf-8")))
            console.print(
                f"Template {created['id']} (placeholders: "
                f"{', '.join(created['placeholders']) or 'none'})"
            )
            accepted = client.submit(csv, created["id"], callback_url=callback_url, send_at=send_at)
        except ApiError as e:
            console.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
        transaction_id = accepted["transaction_id"]
        console.print(f"Transaction [bold]{transaction_id}[/] accepted")
        if not wait:
            return
        record = client.wait(transaction_id, on_status=_print_status)
        _print_counts(record)
        errors = client.errors(transaction_id)["items"]
        for error in errors[:10]:
            details = error["details"]
            console.print(f"  row {details['row']}: {error['code']} - {error['message']}")


def _print_status(entry: dict[str, Any]) -> None:
    console.print(f"  {entry['timestamp']}  [bold cyan]{entry['status']}[/]")


def _print_counts(record: dict[str, Any]) -> None:
    table = Table("outcome", "count")
    for key, value in record["counters"].items():
        if value:
            table.add_row(key, str(value))
    console.print(table)


def _gateway(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("GATEWAY_URL"):
        return os.environ["GATEWAY_URL"]
    info = VAR / "stack.json"
    if info.exists():
        return read_info(info).gateway_url
    return "http://127.0.0.1:8000"


def _api_key(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("EMAIL_PLATFORM_API_KEY"):
        return os.environ["EMAIL_PLATFORM_API_KEY"]
    info = VAR / "stack.json"
    found = read_api_key(info) if info.exists() else None
    if found is None:
        console.print(
            "[red]No API key[/]: pass --api-key, set EMAIL_PLATFORM_API_KEY, or start the "
            "platform with `make run` (it writes one into var/stack.json)."
        )
        raise typer.Exit(2)
    return found


@keys.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    mode: Annotated[
        KeyMode, typer.Option(help="test: the whole pipeline, simulated outcomes, no mail.")
    ] = KeyMode.LIVE,
    admin: Annotated[bool, typer.Option(help="May manage the tenant's keys.")] = False,
    label: Annotated[str | None, typer.Option(help="A note: what the key is for.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"key", "tenant", "mode"} as JSON.')
    ] = False,
) -> None:
    """Create a key and print it, once: only its hash is stored."""
    key, stored = _in_store(
        lambda store: create_key(store, tenant=tenant, mode=mode, admin=admin, label=label)
    )
    if as_json:
        print(json.dumps({"key": key, "tenant": stored.tenant, "mode": str(stored.mode)}))
        return
    role = "admin, " if stored.admin else ""
    console.print(f"Key [bold]{stored.key_id}[/] of tenant {stored.tenant} ({role}{stored.mode}):")
    print(key)
    console.print("Save it now: it is stored only as a hash and cannot be shown again.")


@keys.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List keys, newest first (never the keys themselves: they are not stored)."""
    found = _in_store(lambda store: list_keys(store, tenant))
    if as_json:
        print(json.dumps([_key_fields(k) for k in found]))
        return
    table = Table("id", "prefix", "tenant", "mode", "admin", "label", "created", "revoked")
    for k in found:
        table.add_row(
            k.key_id,
            k.prefix,
            k.tenant,
            k.mode,
            "yes" if k.admin else "",
            k.label or "",
            f"{k.created_at:%Y-%m-%d %H:%M:%S}",
            f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" if k.revoked_at else "",
        )
    console.print(table)


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")],
) -> None:
    """Revoke a key, at once and for good."""
    revoked = _in_store(lambda store: revoke_key(store, key_id))
    if revoked is None:
        console.print(f"[red]No API key {key_id!r}[/]")
        raise typer.Exit(1)
    console.print(
        f"Key {revoked.key_id} of tenant {revoked.tenant} revoked at {revoked.revoked_at}"
    )


def _key_fields(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "prefix": key.prefix,
        "tenant": key.tenant,
        "mode": str(key.mode),
        "admin": key.admin,
        "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _in_store(work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on the store the environment (else var/stack.json) points at."""
    settings = load_settings(ServiceSettings)
    uri = os.environ.get("MONGODB_URI")
    info = VAR / "stack.json"
    if not uri and info.exists():
        uri = read_info(info).mongodb_uri
    uri = uri or settings.mongodb_uri

    async def run() -> T:
        try:
            store = await connect_store(uri, settings.mongodb_db)
        except ConnectionFailure as e:
            raise StoreUnavailable(f"the store at {uri} does not answer: {e}") from e
        try:
            await ensure_indexes(store.db)
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except PlatformError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(app())
