"""``python -m stack.sesim``: the SES v2 simulator as an HTTP server."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from stack.sesim.app import create_app
from stack.sesim.settings import SimSettings, SinkKind

__all__ = ["main", "parse_settings"]


def parse_settings(argv: Sequence[str] | None = None) -> SimSettings:
    parser = argparse.ArgumentParser(prog="python -m stack.sesim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", choices=[k.value for k in SinkKind], default=SinkKind.NONE)
    parser.add_argument("--queue-url", help="SQS queue for the sqs sink")
    parser.add_argument("--nats-url", help="NATS server for the nats sink")
    parser.add_argument("--aws-endpoint-url", help="SQS endpoint (moto); default: AWS")
    parser.add_argument("--aws-region", default="us-east-1")
    parser.add_argument("--max-send-rate", type=float, default=50.0, help="sends per second")
    parser.add_argument("--max-24-hour-send", type=float, default=1_000_000.0)
    parser.add_argument("--event-delay", type=float, default=0.05, help="seconds to the outcome")
    parser.add_argument("--log", help="JSONL file every accepted send is appended to")
    args = parser.parse_args(argv)
    return SimSettings(
        host=args.host,
        port=args.port,
        sink=SinkKind(args.sink),
        queue_url=args.queue_url,
        nats_url=args.nats_url,
        aws_endpoint_url=args.aws_endpoint_url,
        aws_region=args.aws_region,
        max_send_rate=args.max_send_rate,
        max_24_hour_send=args.max_24_hour_send,
        event_delay=args.event_delay,
        log_path=args.log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    # Load tests run the simulator on the cores the platform uses, so every request's CPU
    # counts: uvloop and httptools (the ``stack`` extra) take about a quarter off it, and
    # neither the access log nor proxy-header rewriting serves a loopback test endpoint.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
