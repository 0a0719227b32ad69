"""The simulator's HTTP face: the SES v2 REST routes botocore calls, and ``/_sim`` controls.

SigV4 signatures are not checked. Errors follow the REST-JSON protocol: the code in the
``x-amzn-ErrorType`` header, ``{"message": ...}`` in the body.

``SendEmail`` is answered by a plain ASGI handler in front of Litestar: it is the one route
called a thousand times a second (load tests share two cores with it), and Litestar's
routing, request and response objects cost more CPU than the simulation itself. Every other
route is Litestar's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import msgspec
from litestar import Litestar, Request, delete, get, post
from litestar.enums import ScopeType
from litestar.response import Response
from litestar.types import ASGIApp, HTTPScope, LifeSpanScope, Receive, Scope, Send

from stack.sesim.dispatcher import Dispatcher
from stack.sesim.errors import SesError, bad_request
from stack.sesim.faults import FaultRequest
from stack.sesim.sendlog import SendLog
from stack.sesim.settings import SimSettings, SinkKind
from stack.sesim.shapes import SendEmailRequest
from stack.sesim.simulator import QuotaRequest, Simulator
from stack.sesim.sinks import EventSink, NatsSink, NullSink, SqsSink

__all__ = ["build_sink", "create_app"]

_JSON = "application/json"
_encoder = msgspec.json.Encoder()
_send_email_decoder = msgspec.json.Decoder(SendEmailRequest)
_fault_decoder = msgspec.json.Decoder(FaultRequest)
_quota_decoder = msgspec.json.Decoder(QuotaRequest)
_DRAIN_SECONDS = 5.0
_SEND_EMAIL_PATH = "/v2/email/outbound-emails"
_JSON_HEADER = (b"content-type", _JSON.encode())


def _json(body: object, status: int = 200) -> Response[bytes]:
    return Response(content=_encoder.encode(body), status_code=status, media_type=_JSON)


def _simulator(request: Request[Any, Any, Any]) -> Simulator:
    simulator: Simulator = request.app.state["simulator"]
    return simulator


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers or []),
                _JSON_HEADER,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_email(simulator: Simulator, receive: Receive, send: Send) -> None:
    """``POST /v2/email/outbound-emails``, in plain ASGI (see the module's docstring)."""
    try:
        try:
            request = _send_email_decoder.decode(await _read_body(receive))
        except msgspec.ValidationError as e:
            raise bad_request(str(e)) from e
        except msgspec.DecodeError as e:
            raise bad_request("Malformed JSON body.") from e
        answer = await simulator.send_email(request)
    except SesError as error:
        headers = [
            (b"x-amzn-errortype", f"{error.code}:".encode()),
            (b"x-amzn-requestid", b"simulator"),
        ]
        await _answer(send, error.status, _encoder.encode({"message": error.message}), headers)
        return
    await _answer(send, 200, _encoder.encode(answer))


_NOT_ALLOWED = _encoder.encode({"status_code": 405, "detail": "Method Not Allowed"})


@get("/v2/email/account")
async def get_account(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json(_simulator(request).account())


@get("/_sim/health")
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    simulator = _simulator(request)
    return _json(
        {
            "status": "ok",
            "sink": simulator.settings.sink,
            "sends": len(simulator.log.records()),
            "events_pending": simulator.dispatcher.pending,
            "events_delivered": simulator.dispatcher.delivered,
            "max_send_rate": simulator.max_send_rate,
            "throttled": simulator.throttled,
        }
    )


@get("/_sim/sends")
async def sends(request: Request[Any, Any, Any], message_id: str | None = None) -> Response[bytes]:
    return _json(_simulator(request).log.records(message_id))


@post("/_sim/faults", status_code=200)
async def open_fault(request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        fault = _fault_decoder.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        return _json({"error": str(e)}, status=400)
    simulator = _simulator(request)
    simulator.faults.open(fault)
    return _json(simulator.faults.describe())


@get("/_sim/faults")
async def list_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json(_simulator(request).faults.describe())


@delete("/_sim/faults", status_code=200)
async def clear_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    _simulator(request).faults.clear()
    return _json([])


@post("/_sim/quota", status_code=200)
async def set_quota(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A new maximum send rate, enforced at once and reported by GetAccount."""
    try:
        quota = _quota_decoder.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        return _json({"error": str(e)}, status=400)
    simulator = _simulator(request)
    simulator.set_max_send_rate(quota.max_send_rate)
    return _json({"max_send_rate": simulator.max_send_rate})


@post("/_sim/reset", status_code=200)
async def reset(request: Request[Any, Any, Any]) -> Response[bytes]:
    """No sends, no faults, no throttles counted, the configured rate again."""
    _simulator(request).reset()
    return _json({"status": "reset"})


def build_sink(settings: SimSettings) -> EventSink:
    match settings.sink:
        case SinkKind.SQS:
            if not settings.queue_url:
                raise ValueError("the sqs sink needs a queue URL")
            return SqsSink(
                settings.queue_url,
                endpoint_url=settings.aws_endpoint_url,
                region=settings.aws_region,
                topic_arn=settings.topic_arn,
            )
        case SinkKind.NATS:
            if not settings.nats_url:
                raise ValueError("the nats sink needs a NATS URL")
            return NatsSink(settings.nats_url)
        case SinkKind.NONE:
            return NullSink()


def create_app(settings: SimSettings) -> ASGIApp:
    sink = build_sink(settings)

    @asynccontextmanager
    async def running(app: Litestar) -> AsyncIterator[None]:
        dispatcher = Dispatcher(sink)
        log = SendLog(Path(settings.log_path) if settings.log_path else None)
        app.state["simulator"] = Simulator(settings, dispatcher, log)
        task = asyncio.create_task(dispatcher.run(), name="sesim-dispatcher")
        try:
            yield
        finally:
            # Deliver what is due soon (outcomes a moment away included), then stop.
            await dispatcher.drain(_DRAIN_SECONDS + settings.event_delay)
            dispatcher.cancel_delayed()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sink.aclose()
            log.close()

    app = Litestar(
        route_handlers=[
            get_account,
            health,
            sends,
            open_fault,
            list_faults,
            clear_faults,
            set_quota,
            reset,
        ],
        lifespan=[running],
        openapi_config=None,
    )

    async def simulator_app(scope: Scope | LifeSpanScope, receive: Receive, send: Send) -> None:
        # Compared by value: the server's scope holds plain strings, not ScopeType members.
        http = cast("HTTPScope", scope)
        if scope["type"] == ScopeType.HTTP and http["path"] == _SEND_EMAIL_PATH:
            if http["method"] == "POST":
                await send_email(app.state["simulator"], receive, send)
            else:
                await _answer(send, 405, _NOT_ALLOWED, [(b"allow", b"POST")])
            return
        await app(scope, receive, send)

    return simulator_app
