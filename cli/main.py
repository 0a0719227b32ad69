"""``email-platform``: run the platform, run one service, send a campaign, follow it."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import tomllib
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.client import ApiError, PlatformClient
from stack.launcher import read_info
from stack.platform import SERVICES, Platform

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(highlight=False)

VAR = Path("var")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

GatewayOption = Annotated[
    str | None,
    typer.Option("--gateway", help="Gateway URL (default: GATEWAY_URL, then var/stack.json)."),
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
        console.print(
            f"[green]Up[/]: API at {platform.gateway_url}/api/v1, docs at "
            f"{platform.gateway_url}/schema, logs in {var / 'stack' / 'logs'}"
        )
        if demo:
            _send(
                platform.gateway_url,
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
) -> None:
    """Submit a campaign: upload the template, then the CSV."""
    _send(_gateway(gateway), template, csv, callback_url=callback_url, send_at=send_at, wait=wait)


@app.command()
def status(transaction_id: str, gateway: GatewayOption = None) -> None:
    """Show a transaction's status and progress."""
    with PlatformClient(_gateway(gateway)) as client:
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


def _send(
    gateway: str,
    template: Path,
    csv: Path,
    *,
    callback_url: str | None,
    send_at: str | None,
    wait: bool,
) -> None:
    with PlatformClient(gateway) as client:
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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(app())
