"""Source -> sink: a stream copied to another stream through Spark is exact."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from streamenrich.kinesis.client import kinesis_client
from tests.support import drain, multiset, put_all, read_stream


def test_copy_between_streams_is_exact(
    spark: Any, endpoint: str, new_stream: Any, tmp_path: Path
) -> None:
    source, target = new_stream(shards=4), new_stream(shards=2)
    client = kinesis_client(endpoint_url=endpoint)
    rng = random.Random(11)
    records = [
        (f"rut-{rng.randrange(5_000)}", rng.randbytes(rng.randrange(1, 200))) for _ in range(10_000)
    ]
    put_all(client, source, records)

    started = time.monotonic()
    query = (
        read_stream(
            spark,
            {"streamName": source, "endpointUrl": endpoint, "metadataPath": str(tmp_path / "m")},
        )
        .select("partitionKey", "data")
        .writeStream.format("kinesis")
        .option("streamName", target)
        .option("endpointUrl", endpoint)
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(600)
    elapsed = time.monotonic() - started
    assert query.exception() is None

    copied = drain(client, target)
    assert multiset((r["PartitionKey"], r["Data"]) for r in copied) == multiset(records)
    rows = sum(p["numInputRows"] for p in query.recentProgress)
    assert rows == len(records)
    rate = len(records) / elapsed
    print(f"copy on {endpoint}: {len(records)} records in {elapsed:.1f}s = {rate:.0f}/s")
