"""The simulator's HTTP face: the SES v2 REST routes botocore calls, and ``/_sim`` controls.

SigV4 signatures are not checked. Errors follow the REST-JSON protocol: the code in the
``x-amzn-ErrorType`` header, ``{"message": ...}`` in the body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, delete, get, post
from litestar.response import Response

from stack.sesim.dispatcher import Dispatcher
from stack.sesim.errors import SesError, bad_request
from stack.sesim.faults import FaultRequest
from stack.sesim.sendlog import SendLog
from stack.sesim.settings import SimSettings, SinkKind
from stack.sesim.shapes import SendEmailRequest
from stack.sesim.simulator import Simulator
from stack.sesim.sinks import EventSink, NatsSink, NullSink, SqsSink

__all__ = ["build_sink", "create_app"]

_JSON = "application/json"
_encoder = msgspec.json.Encoder()
_send_email_decoder = msgspec.json.Decoder(SendEmailRequest)
_fault_decoder = msgspec.json.Decoder(FaultRequest)
_DRAIN_SECONDS = 5.0


def _json(body: object, status: int = 200) -> Response[bytes]:
    return Response(content=_encoder.encode(body), status_code=status, media_type=_JSON)


def _simulator(request: Request[Any, Any, Any]) -> Simulator:
    simulator: Simulator = request.app.state["simulator"]
    return simulator


def _ses_error(_: Request[Any, Any, Any], error: SesError) -> Response[bytes]:
    return Response(
        content=_encoder.encode({"message": error.message}),
        status_code=error.status,
        media_type=_JSON,
        headers={"x-amzn-ErrorType": f"{error.code}:", "x-amzn-RequestId": "simulator"},
    )


@post("/v2/email/outbound-emails", status_code=200)
async def send_email(request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        body = _send_email_decoder.decode(await request.body())
    except msgspec.ValidationError as e:
        raise bad_request(str(e)) from e
    except msgspec.DecodeError as e:
        raise bad_request("Malformed JSON body.") from e
    answer = await _simulator(request).send_email(body)
    return _json(answer)


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


@post("/_sim/reset", status_code=200)
async def reset(request: Request[Any, Any, Any]) -> Response[bytes]:
    simulator = _simulator(request)
    simulator.log.clear()
    simulator.faults.clear()
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


def create_app(settings: SimSettings) -> Litestar:
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

    return Litestar(
        route_handlers=[
            send_email,
            get_account,
            health,
            sends,
            open_fault,
            list_faults,
            clear_faults,
            reset,
        ],
        exception_handlers={SesError: _ses_error},
        lifespan=[running],
        openapi_config=None,
    )
