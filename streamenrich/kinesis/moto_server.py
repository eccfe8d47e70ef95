"""moto's server with two fixes that make it keep the Kinesis API contract.

1. Concurrent PutRecords to one shard no longer lose records. moto gives each record the
   shard's highest sequence number plus one without a lock, and its server is threaded, so
   two calls to the same shard at once can both get the same number and one record silently
   replaces the other (seen: 40,000 records acknowledged by four concurrent writers, 38,655
   stored). Serialising ``Shard.put_record`` fixes it.
2. ``ListShards`` with ``NextToken`` and no ``StreamName`` works. AWS refuses a call that has
   both; moto's page token only accepts a call that repeats ``StreamName``. The stream of
   each token moto hands out is remembered and restored.

Everything else is moto as released.

Run as ``python -m streamenrich.kinesis.moto_server -H 127.0.0.1 -p 4566``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any


def _serialise_shard_writes() -> None:
    from moto.kinesis import models

    original = models.Shard.put_record
    lock = threading.Lock()

    @functools.wraps(original)
    def put_record(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    models.Shard.put_record = put_record  # type: ignore[method-assign]


def _list_shards_by_token_alone() -> None:
    from moto.kinesis import models

    original = models.KinesisBackend.list_shards
    streams_by_token: dict[str, tuple[str | None, str | None]] = {}
    lock = threading.Lock()

    @functools.wraps(original)
    def list_shards(
        self: Any,
        stream_arn: str | None,
        stream_name: str | None,
        limit: Any = None,
        next_token: str | None = None,
    ) -> Any:
        if next_token and not (stream_arn or stream_name):
            with lock:
                stream_arn, stream_name = streams_by_token.get(next_token, (None, None))
        shards, token = original(
            self, stream_arn=stream_arn, stream_name=stream_name, limit=limit, next_token=next_token
        )
        if token:
            with lock:
                streams_by_token[token] = (stream_arn, stream_name)
        return shards, token

    models.KinesisBackend.list_shards = list_shards  # type: ignore[method-assign,assignment]


def main() -> None:
    _serialise_shard_writes()
    _list_shards_by_token_alone()
    from moto.server import main as moto_main

    moto_main()


if __name__ == "__main__":
    main()
