"""``streamenrich produce`` and ``streamenrich subscribe`` from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_stream_commands(groups: Any) -> None:
    produce = groups.add_parser("produce", help="publish synthetic events to a stream")
    produce.add_argument("--stream", default="events")
    produce.add_argument("--count", type=int, default=None, help="events (default 1,000)")
    produce.add_argument("--rate", type=float, default=None, help="events per second")
    produce.add_argument("--duration", type=float, default=None, help="seconds, with --rate")
    produce.add_argument("--reference", type=Path, default=Path("reference_data/persons.csv"))
    produce.add_argument("--unknown-share", type=float, default=0.1)
    produce.add_argument("--malformed-share", type=float, default=0.05)
    produce.add_argument("--seed", type=int, default=0)
    produce.set_defaults(handler=_produce)

    subscribe = groups.add_parser("subscribe", help="print records of the output stream")
    subscribe.add_argument("--stream", default="enriched")
    subscribe.add_argument(
        "--from", dest="start", choices=("trim-horizon", "latest"), default="trim-horizon"
    )
    subscribe.add_argument("--rut", default=None, help="only this person (any RUT spelling)")
    subscribe.add_argument("--follow", action="store_true", help="keep reading new records")
    subscribe.add_argument("--limit", type=int, default=None, help="stop after N records")
    subscribe.set_defaults(handler=_subscribe)


def _progress(total: int) -> Any:
    def show(sent: int) -> None:
        width = 30
        done = int(width * sent / max(total, 1))
        bar = "#" * done + "-" * (width - done)
        end = "\n" if sent >= total else ""
        print(f"\r[{bar}] {sent:,}/{total:,} events", end=end, file=sys.stderr, flush=True)

    return show


def _produce(args: argparse.Namespace) -> int:
    from streamenrich.kinesis.client import kinesis_client
    from streamenrich.producer import generate_events
    from streamenrich.publish import publish_events, registry_ruts

    count = args.count
    if count is None:
        count = int(args.rate * args.duration) if args.rate and args.duration else 1_000
    records = generate_events(
        count,
        registry_ruts(str(args.reference)),
        seed=args.seed,
        unknown_share=args.unknown_share,
        malformed_share=args.malformed_share,
    )
    report = publish_events(
        kinesis_client(), args.stream, records, rate_per_s=args.rate, on_progress=_progress(count)
    )
    print(
        f"put {report.records:,} events to {args.stream} in {report.seconds:.1f} s "
        f"({report.records_per_s:,.0f}/s)"
    )
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    from streamenrich.kinesis.client import kinesis_client
    from streamenrich.subscriber import Subscriber

    try:
        subscriber = Subscriber(kinesis_client(), args.stream, start=args.start, rut=args.rut)
    except ValueError as exc:
        print(f"streamenrich: error: {exc}", file=sys.stderr)
        return 2
    shown = 0
    try:
        for record in subscriber.records(follow=args.follow):
            print(json.dumps(record, ensure_ascii=False), flush=True)
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    except KeyboardInterrupt:
        pass
    print(f"{shown} records ({subscriber.duplicates} duplicates dropped)", file=sys.stderr)
    return 0
