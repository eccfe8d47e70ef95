"""Input events: the schema, and parsing Kinesis records into events or dead-letter reasons.

An event is one JSON object per Kinesis record, UTF-8::

    {"event_id": "e-1", "rut": "12.345.678-5", "amount": 125000, "merchant": "Café Ñuñoa",
     "channel": "pos", "region": "CL-RM", "event_time": "2025-03-01T14:05:00-03:00"}

Parsing is native Spark (no Python UDF): the bytes are checked with ``is_valid_utf8``, parsed
once with ``try_parse_json`` into a VARIANT, and each field is read with ``try_variant_get``,
which tells a missing field (SQL NULL) from a JSON ``null`` and from a value of the wrong
JSON type (``schema_of_variant``). Variant casts are lenient (``"12"`` casts to 12, ``true``
to 1), so the type is checked before any value is read.

A record is dead-lettered with the *first* problem found, in this order:

1. ``not_utf8``: the bytes are not valid UTF-8 (a null payload counts as ``not_json``).
2. ``not_json``: not exactly one JSON object: a syntax error, a top-level array, string,
   number or ``null``, duplicate keys, or anything but whitespace after the object (Spark's
   parser stops at the end of the first value; two events in one record are caught here).
3. The fields, in contract order (``event_id``, ``rut``, ``amount``, ``merchant``, ``channel``,
   ``region``, ``event_time``); for each field, presence, then type, then value:

   - ``missing_field:<name>``: absent, or JSON ``null``;
   - ``bad_type:<name>``: not a JSON string (``amount``: not a JSON integer within the
     64-bit range; ``12.0``, ``1e3`` and ``"100"`` are all bad types);
   - ``invalid_rut``: ``rut`` is a string but not a valid RUT in any accepted spelling;
   - ``bad_value:<name>``: a string outside the field's domain: an empty ``event_id``, a
     ``channel`` not exactly one of ``pos|web|atm|transfer``, a ``region`` not an ISO code of
     :data:`~streamenrich.reference.contract.REGIONS`, or an ``event_time`` that is not an
     RFC 3339 instant (see :data:`EVENT_TIME_PATTERN`) or names a day that does not exist.

Fields not in the contract are ignored; ``merchant`` may be any string, ``amount`` any
64-bit integer. Duplicate ``event_id`` values are not an error: ``record_id`` is the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from streamenrich.reference.contract import REGIONS
from streamenrich.reference.rut import with_canonical_rut

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

CHANNELS: tuple[str, ...] = ("pos", "web", "atm", "transfer")
# Field name -> (JSON type as schema_of_variant names it, Spark type of the parsed column).
# Order is the contract order, which is also the order in which problems are reported.
EVENT_FIELDS: dict[str, tuple[str, str]] = {
    "event_id": ("STRING", "string"),
    "rut": ("STRING", "string"),
    "amount": ("BIGINT", "bigint"),
    "merchant": ("STRING", "string"),
    "channel": ("STRING", "string"),
    "region": ("STRING", "string"),
    "event_time": ("STRING", "timestamp"),
}
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_FIELDS)
# The Kinesis source's metadata columns, kept on every output but ``matched``.
SOURCE_COLUMNS: tuple[str, ...] = (
    "streamName",
    "shardId",
    "partitionKey",
    "sequenceNumber",
    "approximateArrivalTimestamp",
)
# RFC 3339 with a mandatory zone, years 1900-2999 and offsets up to +-14:00 (the real range;
# larger offsets are refused by Java and accepted by Python, so they are refused here).
EVENT_TIME_PATTERN = (
    r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)

NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
INVALID_RUT = "invalid_rut"
# JSON whitespace: what may surround the object.
_JSON_SPACE = " \t\r\n"


def missing_field(name: str) -> str:
    return f"missing_field:{name}"


def bad_type(name: str) -> str:
    return f"bad_type:{name}"


def bad_value(name: str) -> str:
    return f"bad_value:{name}"


def record_id_column() -> Column:
    """``<shardId>:<sequenceNumber>``: unique per Kinesis record, the subscribers' dedupe key."""
    return F.concat(F.col("shardId"), F.lit(":"), F.col("sequenceNumber"))


def _wrapped_json(text: Column) -> Column:
    """The text parsed wrapped in ``[...]``: a VARIANT array, or null if that is not JSON."""
    return F.call_function("try_parse_json", F.concat(F.lit("["), text, F.lit("]")))


def _one_object(text: Column, wrapped: Column) -> Column:
    """Whether the text is exactly one JSON object, given :func:`_wrapped_json` of it.

    Spark's JSON parser stops at the end of the first value and ignores what follows. In
    ``[text]`` trailing content makes the array invalid or longer than one element, except
    content starting with ``]``, which the object-wrapped parse (``{"k": text}``) refuses;
    that second parse runs only for the rare texts containing ``}]``.
    """
    second = F.call_function("try_variant_get", wrapped, F.lit("$[1]"), F.lit("variant"))
    starts_as_object = F.ltrim(text, F.lit(_JSON_SPACE)).startswith("{")
    no_bracket_after_object = F.when(
        text.rlike(r"\}[ \t\r\n]*\]"),
        F.call_function("try_parse_json", F.concat(F.lit('{"k":'), text, F.lit("}"))).isNotNull(),
    ).otherwise(F.lit(True))
    ok = wrapped.isNotNull() & second.isNull() & starts_as_object & no_bracket_after_object
    return F.coalesce(ok, F.lit(False))


def _variant_get(value: Column, path: str, spark_type: str) -> Column:
    return F.call_function("try_variant_get", value, F.lit(path), F.lit(spark_type))


def parse_events(events: DataFrame) -> DataFrame:
    """Parse Kinesis records (the source schema) into events, or a dead-letter ``reason``.

    Returns one row per input row with ``record_id``, ``reason`` (null when the event is
    valid), the event columns (:data:`EVENT_COLUMNS`; ``rut`` canonical, ``event_time`` a
    TIMESTAMP; meaningful only where ``reason`` is null), the source metadata columns and the
    original ``data``. Lazy: no Spark action, so it works on streaming DataFrames.
    """
    # One select per step: each expensive value (the JSON parse, each field's variant) is a
    # column of its own, which Spark's CollapseProject never copies into several consumers,
    # so the record is parsed once.
    text = F.col("data").cast("string")
    keep = ["record_id", *SOURCE_COLUMNS, "data"]
    frame = events.select(
        record_id_column().alias("record_id"),
        *SOURCE_COLUMNS,
        "data",
        F.coalesce(F.call_function("is_valid_utf8", text), F.lit(False)).alias("_utf8"),
    )
    frame = frame.select(*keep, "_utf8", F.when(F.col("_utf8"), _wrapped_json(text)).alias("_w"))
    frame = frame.select(
        *keep,
        "_utf8",
        _one_object(text, F.col("_w")).alias("_one"),
        _variant_get(F.col("_w"), "$[0]", "variant").alias("_obj"),
    )
    frame = frame.select(
        *keep,
        "_utf8",
        "_one",
        *[
            _variant_get(F.col("_obj"), f"$.{name}", "variant").alias(f"_raw_{name}")
            for name in EVENT_FIELDS
        ],
    )
    checks: list[Column] = []
    for name, (json_type, _) in EVENT_FIELDS.items():
        raw = F.col(f"_raw_{name}")
        spark_type = "bigint" if json_type == "BIGINT" else "string"
        checks += [
            F.coalesce(
                raw.isNotNull() & ~F.call_function("is_variant_null", raw), F.lit(False)
            ).alias(f"_present_{name}"),
            F.coalesce(F.call_function("schema_of_variant", raw) == json_type, F.lit(False)).alias(
                f"_typed_{name}"
            ),
            _variant_get(raw, "$", spark_type).alias(f"_value_{name}"),
        ]
    frame = frame.select(*keep, "_utf8", "_one", *checks)
    value = {name: F.col(f"_value_{name}") for name in EVENT_FIELDS}
    frame = with_canonical_rut(frame, "_value_rut", "_rut")
    frame = frame.select(
        "*",
        F.when(
            value["event_time"].rlike(EVENT_TIME_PATTERN),
            F.call_function("try_to_timestamp", value["event_time"]),
        ).alias("_event_time"),
    )
    parsed = {**value, "rut": F.col("_rut"), "event_time": F.col("_event_time")}
    bad_values = {
        "event_id": F.length(value["event_id"]) == 0,
        "rut": parsed["rut"].isNull(),
        "channel": ~value["channel"].isin(*CHANNELS),
        "region": ~value["region"].isin(*REGIONS),
        "event_time": parsed["event_time"].isNull(),
    }
    ordered: list[tuple[Column, str]] = [
        (~F.col("_utf8") & F.col("data").isNotNull(), NOT_UTF8),
        (~F.col("_one"), NOT_JSON),
    ]
    for name in EVENT_FIELDS:
        ordered.append((~F.col(f"_present_{name}"), missing_field(name)))
        ordered.append((~F.col(f"_typed_{name}"), bad_type(name)))
        if name in bad_values:
            code = INVALID_RUT if name == "rut" else bad_value(name)
            ordered.append((F.coalesce(bad_values[name], F.lit(True)), code))
    reason = F.coalesce(*[F.when(failed, F.lit(code)) for failed, code in ordered])
    return frame.select(
        "record_id",
        reason.alias("reason"),
        *[parsed[name].alias(name) for name in EVENT_FIELDS],
        *SOURCE_COLUMNS,
        "data",
    )
