"""The enrichment transform: Kinesis records in, four disjoint DataFrames out.

>>> enriched = enrich(events, registry, RuleSet.from_file("reference_data/rules.yaml"))
... # doctest: +SKIP
>>> enriched.matched.select("partitionKey", "data").writeStream.format("kinesis")
... # doctest: +SKIP

Every input row is in exactly one output:

- ``dead_letter``: the record could not be parsed or validated (``reason``, see
  :mod:`streamenrich.enrich.events`);
- ``unknown``: a valid event whose RUT is not in the registry;
- ``matched``: joined with its person and at least one rule fired;
- ``unmatched``: joined, and no rule fired.

``enrich`` runs no Spark action, so it works on a streaming DataFrame (directly, or on each
micro-batch in ``foreachBatch``). Each output is its own lazy plan, so writing all four
parses the input four times and evaluates the rules twice per joined row (once for
``matched``, once for ``unmatched``). In ``foreachBatch``, ``persist=True`` makes them share
one parse and one evaluation (``persist()`` is lazy, not an action); call
:meth:`Enriched.unpersist` when the batch is written::

    def write_batch(batch, batch_id):
        out = enrich(batch, registry, rules, persist=True)
        try:
            ...  # write out.matched, out.dead_letter; count out.unmatched, out.unknown
        finally:
            out.unpersist()

The registry must have one row per canonical RUT (the registry's validation guarantees it); a
duplicated RUT would duplicate its events. It is broadcast to every task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from streamenrich.enrich.events import EVENT_COLUMNS, SOURCE_COLUMNS, parse_events
from streamenrich.enrich.lookup import RegistryIndex, rut_key
from streamenrich.enrich.rules import PERSON_COLUMNS, RuleSet
from streamenrich.kinesis.source import SOURCE_SCHEMA
from streamenrich.reference.contract import REGISTRY_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BUCKETS: tuple[str, ...] = ("matched", "unmatched", "unknown", "dead_letter")
# Timestamps in output JSON: RFC 3339 in UTC with microseconds, e.g. 2025-03-01T17:05:00.000000Z.
JSON_OPTIONS = {
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "timeZone": "UTC",
    "ignoreNullFields": "false",
}


class InputSchemaError(ValueError):
    """The events or the registry DataFrame lacks a column of its contract, or has another type."""


@dataclass(frozen=True)
class Enriched:
    """The four outputs of :func:`enrich`; together they hold every input row exactly once.

    - ``matched``: ``record_id``, ``partitionKey`` (canonical RUT), ``data`` (the output record
      as JSON), ``rules`` (names fired);
    - ``unmatched``: ``record_id``, the event columns, ``person`` (struct of the reference
      fields), the source columns;
    - ``unknown``: ``record_id``, the event columns, the source columns;
    - ``dead_letter``: ``record_id``, ``reason``, ``partitionKey`` (the input's), ``data`` (a
      JSON record with the reason, the original bytes in base64 and the source metadata),
      ``original`` (the bytes as read), and the other source columns.
    """

    matched: DataFrame
    unmatched: DataFrame
    unknown: DataFrame
    dead_letter: DataFrame
    persisted: tuple[DataFrame, ...] = ()

    def frames(self) -> dict[str, DataFrame]:
        """The outputs by bucket name, in :data:`BUCKETS` order."""
        return {name: getattr(self, name) for name in BUCKETS}

    def unpersist(self) -> None:
        """Drop what ``enrich(..., persist=True)`` cached; a no-op otherwise."""
        for frame in self.persisted:
            frame.unpersist()


def _ddl_types(ddl: str) -> dict[str, str]:
    return {part.split()[0]: part.split()[1].lower() for part in ddl.split(",")}


def _check_schema(frame: DataFrame, ddl: str, what: str) -> None:
    actual = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    for name, spark_type in _ddl_types(ddl).items():
        if name not in actual:
            raise InputSchemaError(f"{what} has no column '{name}' (expected {ddl})")
        if actual[name] != spark_type:
            raise InputSchemaError(
                f"{what} column '{name}' is {actual[name]}, expected {spark_type}"
            )


def _source_struct() -> Column:
    return F.struct(
        F.col("streamName").alias("stream"),
        F.col("shardId").alias("shard"),
        F.col("sequenceNumber").alias("sequence_number"),
        F.col("approximateArrivalTimestamp").alias("arrival_time"),
    )


def _person_struct() -> Column:
    return F.struct(*[F.col(column).alias(name) for name, column in PERSON_COLUMNS.items()])


def _output_record(processed_at: Column) -> Column:
    """The matched record, as JSON text in the data contract's field order."""
    record = F.struct(
        *EVENT_COLUMNS,
        _person_struct().alias("person"),
        F.col("rules"),
        F.col("record_id"),
        _source_struct().alias("source"),
        processed_at.alias("processed_at"),
    )
    return F.to_json(record, JSON_OPTIONS)


def _dead_letter_record(processed_at: Column) -> Column:
    record = F.struct(
        F.col("record_id"),
        F.col("reason"),
        # Spark's base64 breaks lines every 76 characters while the (default) setting
        # spark.sql.chunkBase64String.enabled is on; strict decoders refuse that.
        F.translate(F.base64(F.col("data")), "\r\n", "").alias("data_base64"),
        F.col("partitionKey").alias("partition_key"),
        _source_struct().alias("source"),
        processed_at.alias("processed_at"),
    )
    return F.to_json(record, JSON_OPTIONS)


def enrich(
    events: DataFrame,
    registry: DataFrame,
    rules: RuleSet,
    *,
    processed_at: Column | None = None,
    persist: bool = False,
) -> Enriched:
    """Parse, validate, join and score Kinesis records; see the module docstring.

    ``events`` has the Kinesis source schema; ``registry`` the registry contract
    (``REGISTRY_SCHEMA``; extra columns are ignored). ``processed_at`` defaults to
    ``current_timestamp()`` (one value per query or micro-batch). ``persist`` (static
    DataFrames only) caches the parsed events and the scored join so that the four outputs
    share them. Raises :class:`InputSchemaError` or
    :class:`~streamenrich.enrich.rules.RuleError` up front.
    """
    _check_schema(events, SOURCE_SCHEMA, "events")
    _check_schema(registry, REGISTRY_SCHEMA, "registry")
    if persist and events.isStreaming:
        raise ValueError("persist=True needs a static DataFrame (e.g. a foreachBatch batch)")
    now = F.current_timestamp() if processed_at is None else processed_at
    parsed = parse_events(events)
    if persist:
        parsed = parsed.persist()

    dead_letter = parsed.where(F.col("reason").isNotNull()).select(
        "record_id",
        "reason",
        "partitionKey",
        _dead_letter_record(now).alias("data"),
        F.col("data").alias("original"),
        *[c for c in SOURCE_COLUMNS if c != "partitionKey"],
    )

    valid = parsed.where(F.col("reason").isNull()).drop("reason", "data")
    people = registry.select(
        *[F.col(name).alias(column) for name, column in PERSON_COLUMNS.items()]
    )
    joined = valid.join(F.broadcast(people), valid["rut"] == people[PERSON_COLUMNS["rut"]], "left")
    known = F.col(PERSON_COLUMNS["rut"]).isNotNull()
    scored = rules.apply(joined, where=known)
    # Spark pushes a filter below the projection that computes "rules" and would then
    # evaluate every rule twice (once for the filter, once for the output). The generator
    # below is a barrier the optimizer does not push filters through: each rule runs once,
    # and only on joined rows ("rules" and "fired_count" are null for an unknown RUT).
    fired_count = F.when(known, F.size("rules")).alias("fired_count")
    scored = scored.select("*", F.inline(F.array(F.struct(fired_count))))
    if persist:
        scored = scored.persist()
    event_and_source = ["record_id", *EVENT_COLUMNS, *SOURCE_COLUMNS]
    unknown = scored.where(~known).select(*event_and_source)
    matched = scored.where(F.col("fired_count") > 0).select(
        "record_id",
        F.col("rut").alias("partitionKey"),
        _output_record(now).alias("data"),
        "rules",
    )
    unmatched = scored.where(F.col("fired_count") == 0).select(
        "record_id", *EVENT_COLUMNS, _person_struct().alias("person"), *SOURCE_COLUMNS
    )
    return Enriched(
        matched=matched,
        unmatched=unmatched,
        unknown=unknown,
        dead_letter=dead_letter,
        persisted=(parsed, scored) if persist else (),
    )


# The columns of :func:`classify`'s output.
CLASSIFIED_COLUMNS: tuple[str, ...] = (
    "record_id",
    "bucket",
    "reason",
    "partitionKey",
    "data",
    "approximateArrivalTimestamp",
)


def classify(
    events: DataFrame,
    people: RegistryIndex | DataFrame,
    rules: RuleSet,
    *,
    processed_at: Column | None = None,
) -> DataFrame:
    """Every input row once, with its ``bucket`` (one of :data:`BUCKETS`): one linear plan.

    The same outcome as :func:`enrich`, as one DataFrame of :data:`CLASSIFIED_COLUMNS`:
    ``data`` is the output record for ``matched`` (``partitionKey`` the canonical RUT) and the
    dead-letter record for ``dead_letter`` (``partitionKey`` the input's), null for the other
    two buckets; ``reason`` is set for ``dead_letter`` only. With no filter and no branch, a
    single pass (one Spark job) can publish both streams and count all four buckets, with
    each record parsed once and each rule evaluated once per joined row.

    ``people`` is a :class:`~streamenrich.enrich.lookup.RegistryIndex` (held on the
    executors; what the streaming job uses) or a registry DataFrame (broadcast per query).
    """
    _check_schema(events, SOURCE_SCHEMA, "events")
    now = F.current_timestamp() if processed_at is None else processed_at
    parsed = parse_events(events)
    # Only valid events are looked up: a dead-lettered record never gets a person.
    key = F.when(F.col("reason").isNull(), F.col("rut"))
    if isinstance(people, RegistryIndex):
        joined = people.join(parsed, rut_key(key))
    else:
        _check_schema(people, REGISTRY_SCHEMA, "registry")
        persons = people.select(
            *[F.col(name).alias(column) for name, column in PERSON_COLUMNS.items()]
        )
        keyed = parsed.withColumn("_join_rut", key)
        joined = keyed.join(
            F.broadcast(persons), keyed["_join_rut"] == persons[PERSON_COLUMNS["rut"]], "left"
        ).drop("_join_rut")
    known = F.col(PERSON_COLUMNS["rut"]).isNotNull()
    scored = rules.apply(joined, where=known)
    bucket = (
        F.when(F.col("reason").isNotNull(), F.lit("dead_letter"))
        .when(~known, F.lit("unknown"))
        .when(F.size("rules") > 0, F.lit("matched"))
        .otherwise(F.lit("unmatched"))
    )
    staged = scored.select("*", bucket.alias("bucket"))
    matched = F.col("bucket") == "matched"
    dead = F.col("bucket") == "dead_letter"
    return staged.select(
        "record_id",
        "bucket",
        "reason",
        F.when(matched, F.col("rut")).when(dead, F.col("partitionKey")).alias("partitionKey"),
        F.when(matched, _output_record(now)).when(dead, _dead_letter_record(now)).alias("data"),
        "approximateArrivalTimestamp",
    )
