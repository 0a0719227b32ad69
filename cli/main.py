"""``email-platform``: run the platform, run one service, send a campaign and follow it
with progress bars, fetch its row errors, review dead letters and alerts, manage API keys."""

from __future__ import annotations

import asyncio
import contextlib
import csv as csv_module
import importlib
import json
import os
import signal
import sys
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pymongo.errors import ConnectionFailure
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli import exits
from cli.client import ApiError, PlatformClient
from cli.exits import EPILOG, ExitCode
from cli.progress import PhaseBars
from shared.api_keys import ApiKey, KeyMode, create_key, list_keys, revoke_key
from shared.errors import PlatformError, StoreUnavailable
from shared.indexes import ensure_indexes
from shared.settings import ServiceSettings, load_settings
from shared.status import TxStatus
from shared.store import Store, connect_store
from stack.launcher import read_info
from stack.platform import LOCAL_TENANT, SERVICES, Platform, read_api_key

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, epilog=EPILOG)
keys = typer.Typer(
    no_args_is_help=True,
    help="API keys, straight in the store (MONGODB_URI and MONGODB_DB, else var/stack.json).",
)
app.add_typer(keys, name="keys")
dlq = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: work that failed for good, kept for review (needs an admin key).",
)
app.add_typer(dlq, name="dlq")
console = Console(highlight=False)
# Errors, and with --json every message and progress bar: stdout carries only the JSON.
stderr = Console(stderr=True, highlight=False)

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
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the API's JSON document on stdout; messages and bars go to stderr.",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(help="Give up (exit 1) after this many seconds; default: wait for the end."),
]


def parse_replicas(text: str | None) -> dict[str, int]:
    """``sender=3,ingest=2`` -> ``{"sender": 3, "ingest": 2}``; a bad one is a usage error."""
    replicas: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, count = (piece.strip() for piece in part.partition("="))
        if not sep or name not in SERVICES:
            raise typer.BadParameter(
                f"{part.strip()!r}: expected SERVICE=COUNT, SERVICE one of {', '.join(SERVICES)}",
                param_hint="--replicas",
            )
        if name in replicas:
            raise typer.BadParameter(f"{name} given twice", param_hint="--replicas")
        if not count.isdigit() or int(count) < 1:
            raise typer.BadParameter(
                f"{part.strip()!r}: COUNT must be a whole number, 1 or more",
                param_hint="--replicas",
            )
        if name == "gateway" and int(count) != 1:
            raise typer.BadParameter("the gateway runs once: it owns GATEWAY_PORT")
        replicas[name] = int(count)
    return replicas


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Send the bundled demo campaign.")] = True,
    var: Annotated[Path, typer.Option(help="Where state and logs go.")] = VAR,
    replicas: Annotated[
        str | None,
        typer.Option(
            metavar="SERVICE=N,...",
            help="Processes per service, e.g. sender=3,ingest=2 (default: one of each).",
        ),
    ] = None,
) -> None:
    """Start the embedded stack and every service; serve until Ctrl-C."""
    counts = parse_replicas(replicas)
    signal.signal(signal.SIGTERM, _interrupt)
    platform = Platform(var, replicas=counts)
    processes = sum(platform.replicas.values())
    console.print(
        f"[bold]Starting[/] NATS, the store, moto, the SES simulator and {processes} service "
        "processes…"
    )
    try:
        platform.start()
        assert platform.api_key is not None
        console.print(
            f"[green]Up[/]: API at {platform.gateway_url}/api/v1, docs at "
            f"{platform.gateway_url}/schema, dashboard at {platform.gateway_url}/dashboard, "
            f"logs in {var / 'stack' / 'logs'}"
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


@app.command(epilog=EPILOG)
def send(
    template: Annotated[
        Path,
        typer.Option(
            help="Template file (TOML: name, subject, html, text).", exists=True, dir_okay=False
        ),
    ],
    csv: Annotated[
        Path, typer.Option(help="Recipients CSV with an email column.", exists=True, dir_okay=False)
    ],
    callback_url: Annotated[str | None, typer.Option(help="POSTed on every status change.")] = None,
    send_at: Annotated[str | None, typer.Option(help="RFC 3339 time with offset.")] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the campaign until it is final, with progress bars.")
    ] = False,
    timeout: TimeoutOption = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a campaign: upload the template, then the CSV.

    --json prints the accepted transaction, or with --wait the final one."""
    raise typer.Exit(
        _send(
            _gateway(gateway),
            _api_key(api_key),
            template,
            csv,
            callback_url=callback_url,
            send_at=send_at,
            wait=wait,
            timeout=timeout,
            as_json=as_json,
        )
    )


@app.command(epilog=EPILOG)
def status(
    transaction_id: str,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a transaction's status and progress (exits 1 if it FAILED or was CANCELLED).

    --json prints the transaction."""
    with _client(gateway, api_key, as_json) as client:
        current = client.status(transaction_id)
        record = client.transaction(transaction_id)
    if as_json:
        _emit(record)
    else:
        progress = current["progress"]
        console.print(
            f"{transaction_id}: [bold]{current['status']}[/] "
            f"{progress['processed_messages']}/{progress['total_messages']} "
            f"({progress['percentage']}%), ETA {current['estimated_completion'] or '-'}"
        )
        _print_counts(record, console)
    raise typer.Exit(exits.for_transaction(record["status"]))


@app.command(epilog=EPILOG)
def watch(
    transaction_id: str,
    timeout: TimeoutOption = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a transaction with progress bars until it is final, then show its counts.

    --json prints the final transaction."""
    out = _human(as_json)
    with _client(gateway, api_key, as_json) as client:
        record = _follow(client, transaction_id, out, timeout)
        if as_json:
            _emit(record)
        else:
            _report(client, record, out)
    raise typer.Exit(exits.for_transaction(record["status"]))


@app.command(epilog=EPILOG)
def errors(
    transaction_id: str,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where the CSV goes ('-': stdout). Default: ID-errors.csv.",
            dir_okay=False,
        ),
    ] = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the rows in error as a CSV, to fix and resubmit.

    The file's header row plus error_code and error_message, one line per row in error.
    --json also prints them as the API lists them."""
    target = output or Path(f"{transaction_id}-errors.csv")
    to_stdout = str(target) == "-"
    if to_stdout and as_json:
        raise typer.BadParameter("--json and --output - would both write to stdout")
    out = _human(as_json)
    with _client(gateway, api_key, as_json) as client:
        if to_stdout:
            client.errors_csv(transaction_id, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            _write_errors_csv(client, transaction_id, target)
            out.print(f"{_csv_records(target)} row errors of {transaction_id} written to {target}")
        if as_json:
            _emit({"items": client.all_errors(transaction_id), "next_cursor": None})


@app.command(epilog=EPILOG)
def cancel(
    transaction_id: str,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel what a transaction has not sent yet.

    --json prints the transaction."""
    with _client(gateway, api_key, as_json) as client:
        record = client.cancel(transaction_id)
    if as_json:
        _emit(record)
        return
    console.print(
        f"{transaction_id}: cancel requested at {record['cancel_requested_at']} "
        f"(now {record['status']}; CANCELLED once sends in flight end)"
    )


@app.command(epilog=EPILOG)
def reschedule(
    transaction_id: str,
    send_at: Annotated[str, typer.Argument(help="RFC 3339 time with offset: the first slot's.")],
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move a SCHEDULED transaction: its first slot to SEND_AT, the others alike.

    --json prints the transaction."""
    with _client(gateway, api_key, as_json) as client:
        record = client.reschedule(transaction_id, send_at)
    if as_json:
        _emit(record)
        return
    schedule = record["schedule"] or {}
    console.print(
        f"{transaction_id}: {record['status']}, first slot at {schedule.get('first_slot_at')}, "
        f"last at {schedule.get('last_slot_at')}"
    )


@app.command(epilog=EPILOG)
def alerts(
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The alerts firing now, and those resolved in the last day (the tracker's rules, the
    sender's pause).

    --json prints them as the API answers."""
    with _client(gateway, api_key, as_json) as client:
        found = client.alerts()
    if as_json:
        _emit(found)
        return
    items = found["items"]
    if not items:
        console.print("No alert: none firing, none resolved in the last day.")
        return
    table = Table("rule", "state", "since", "until", "summary", "transactions")
    for alert in items:
        table.add_row(
            alert["rule"],
            f"[red]{alert['state']}[/]" if alert["state"] == "firing" else alert["state"],
            alert["since"],
            alert["until"] or "",
            escape(alert["summary"] or alert["reason"]),
            " ".join(alert["transactions"]),
        )
    console.print(table)


@dlq.command("list", epilog=EPILOG)
def dlq_list(
    kind: Annotated[
        str | None,
        typer.Option(
            help="Only this kind: ingest_job, send_batch, schedule_job, event, job (any of "
            "those), callback, message."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters, newest first.

    --json prints {"items", "next_cursor"} (the cursor of what is left beyond --limit)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with _client(gateway, api_key, as_json) as client:
        while len(items) < limit:
            page = client.dead_letters(kind, cursor)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if cursor is None:
                break
    if as_json:
        _emit({"items": items[:limit], "next_cursor": cursor})
        return
    table = Table("id", "kind", "state", "transaction", "attempts", "at", "error")
    for letter in items[:limit]:
        table.add_row(
            letter["id"],
            letter["kind"],
            letter["state"],
            letter["transaction_id"] or "",
            str(letter["attempts"]),
            letter["at"],
            escape(letter["error"][:60]),
        )
    console.print(table)
    if cursor is not None:
        console.print(f"More beyond --limit {limit}.")


@dlq.command("show", epilog=EPILOG)
def dlq_show(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `dlq list`).")],
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: its payload, its error and its attempts."""
    with _client(gateway, api_key, as_json) as client:
        letter = client.dead_letter(letter_id)
    if as_json:
        _emit(letter)
        return
    console.print_json(data=letter)


@dlq.command("retry", epilog=EPILOG)
def dlq_retry(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `dlq list`).")],
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put the dead letter's work back where it failed, once more."""
    with _client(gateway, api_key, as_json) as client:
        letter = client.retry_dead_letter(letter_id)
    _print_letter(letter, "retried", as_json)


@dlq.command("discard", epilog=EPILOG)
def dlq_discard(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `dlq list`).")],
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give up on the dead letter's work: recorded with who and when, never deleted."""
    with _client(gateway, api_key, as_json) as client:
        letter = client.discard_dead_letter(letter_id)
    _print_letter(letter, "discarded", as_json)


def _print_letter(letter: dict[str, Any], done: str, as_json: bool) -> None:
    if as_json:
        _emit(letter)
        return
    console.print(f"Dead letter {letter['id']} {done}: now {letter['state']}")


def _send(
    gateway: str,
    api_key: str,
    template: Path,
    csv: Path,
    *,
    callback_url: str | None,
    send_at: str | None,
    wait: bool,
    timeout: float | None = None,
    as_json: bool = False,
) -> ExitCode:
    out = _human(as_json)
    try:
        spec = tomllib.loads(template.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        _fail(f"{template}: not a TOML template: {e}")
        return ExitCode.USAGE
    with _client(gateway, api_key, as_json) as client:
        created = client.create_template(spec)
        out.print(
            f"Template {created['id']} (placeholders: "
            f"{', '.join(created['placeholders']) or 'none'})"
        )
        accepted = client.submit(csv, created["id"], callback_url=callback_url, send_at=send_at)
        transaction_id = accepted["transaction_id"]
        out.print(f"Transaction [bold]{transaction_id}[/] accepted")
        if not wait:
            if as_json:
                _emit(accepted)
            return ExitCode.DONE
        record = _follow(client, transaction_id, out, timeout)
        if as_json:
            _emit(record)
        else:
            _report(client, record, out)
    return exits.for_transaction(record["status"])


def _follow(
    client: PlatformClient, transaction_id: str, out: Console, timeout: float | None
) -> dict[str, Any]:
    """Poll the transaction until it is final: a line per status, a bar per phase."""
    with PhaseBars(out) as bars:
        return client.wait(
            transaction_id,
            on_status=lambda entry: bars.console.print(
                f"  {entry['timestamp']}  [bold cyan]{entry['status']}[/]"
            ),
            on_record=bars.update,
            timeout=timeout,
            interval=0.5,
        )


def _report(client: PlatformClient, record: dict[str, Any], out: Console) -> None:
    """The final counts, why it failed if it did, and the first row errors."""
    _print_counts(record, out)
    if record.get("failure"):
        failure = record["failure"]
        out.print(
            f"[red]{record['status']}[/]: "
            f"{escape(str(failure.get('code', '')))} {escape(str(failure.get('message', '')))}"
        )
    elif record["status"] != TxStatus.COMPLETED:
        out.print(f"[red]{record['status']}[/]")
    for error in client.errors(record["transaction_id"])["items"][:10]:
        details = error["details"]
        out.print(
            f"  row {details['row']}: {error['code']} - {error['message']}",
            markup=False,
            highlight=False,
        )


def _print_counts(record: dict[str, Any], out: Console) -> None:
    table = Table("outcome", "count")
    for key, value in record["counters"].items():
        if value:
            table.add_row(key, str(value))
    out.print(table)


def _write_errors_csv(client: PlatformClient, transaction_id: str, target: Path) -> None:
    """Into a file beside ``target`` first: an answer that is an error leaves no file."""
    staged = target.with_name(f".{target.name}.part")
    try:
        with staged.open("wb") as f:
            client.errors_csv(transaction_id, f)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)


def _csv_records(path: Path) -> int:
    """Records after the header (a quoted line break does not make two)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        return max(0, sum(1 for _ in csv_module.reader(f)) - 1)


@contextlib.contextmanager
def _client(gateway: str | None, api_key: str | None, as_json: bool) -> Iterator[PlatformClient]:
    """A client of the gateway; an API error or silence ends the command with its exit code
    (with --json, the API's error document on stdout)."""
    url = _gateway(gateway)
    with PlatformClient(url, api_key=_api_key(api_key)) as client:
        try:
            yield client
        except ApiError as e:
            if as_json:
                _emit(e.body)
            _fail(str(e))
            raise typer.Exit(exits.for_api_status(e.status)) from e
        except httpx.HTTPError as e:
            _fail(f"The gateway at {url} did not answer: {e!r}")
            raise typer.Exit(ExitCode.FAILED) from e
        except TimeoutError as e:
            _fail(str(e))
            raise typer.Exit(ExitCode.FAILED) from e


def _human(as_json: bool) -> Console:
    """Where messages and bars go: stdout, unless stdout carries the JSON."""
    return stderr if as_json else console


def _emit(document: Any) -> None:
    """The one JSON document of --json, on stdout, unwrapped by rich."""
    print(json.dumps(document, ensure_ascii=False))


def _fail(message: str) -> None:
    stderr.print(message, style="red", markup=False, highlight=False)


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
        _fail(
            "No API key: pass --api-key, set EMAIL_PLATFORM_API_KEY, or start the "
            "platform with `make run` (it writes one into var/stack.json)."
        )
        raise typer.Exit(ExitCode.USAGE)
    return found


@keys.command("create", epilog=EPILOG)
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    mode: Annotated[
        KeyMode, typer.Option(help="test: the whole pipeline, simulated outcomes, no mail.")
    ] = KeyMode.LIVE,
    admin: Annotated[bool, typer.Option(help="May manage the tenant's keys.")] = False,
    label: Annotated[str | None, typer.Option(help="A note: what the key is for.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it, once: only its hash is stored.

    --json prints what POST /api/v1/admin/keys answers (the key, id, prefix, tenant...)."""
    key, stored = _in_store(
        lambda store: create_key(store, tenant=tenant, mode=mode, admin=admin, label=label)
    )
    if as_json:
        fields = _key_fields(stored)
        del fields["revoked_at"]
        _emit({"key": key, **fields})
        return
    role = "admin, " if stored.admin else ""
    console.print(f"Key [bold]{stored.key_id}[/] of tenant {stored.tenant} ({role}{stored.mode}):")
    print(key)
    console.print("Save it now: it is stored only as a hash and cannot be shown again.")


@keys.command("list", epilog=EPILOG)
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List keys, newest first (never the keys themselves: they are not stored).

    --json prints {"items": [...]} as GET /api/v1/admin/keys does."""
    found = _in_store(lambda store: list_keys(store, tenant))
    if as_json:
        _emit({"items": [_key_fields(k) for k in found]})
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


@keys.command("revoke", epilog=EPILOG)
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key, at once and for good.

    --json prints the key as listed."""
    revoked = _in_store(lambda store: revoke_key(store, key_id))
    if revoked is None:
        _fail(f"No API key {key_id!r}")
        raise typer.Exit(ExitCode.FAILED)
    if as_json:
        _emit(_key_fields(revoked))
        return
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
        _fail(str(e))
        raise typer.Exit(ExitCode.FAILED) from e


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(app())
