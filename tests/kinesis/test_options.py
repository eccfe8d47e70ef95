"""Source and sink options: every default, every error names its option."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from streamenrich.kinesis import options as opt
from streamenrich.kinesis.errors import OptionError
from streamenrich.kinesis.positions import ShardPosition


def test_source_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9")
    parsed = opt.SourceOptions.parse({"streamName": "events"})
    assert parsed.stream_name == "events"
    assert parsed.region == "sa-east-1"
    assert parsed.endpoint_url == "http://127.0.0.1:9"
    assert parsed.starting_position == ShardPosition.trim_horizon()
    assert parsed.max_records_per_shard == opt.DEFAULT_MAX_RECORDS_PER_SHARD == 10_000
    assert parsed.max_fetch_time_ms == opt.DEFAULT_MAX_FETCH_TIME_MS == 1_000
    assert parsed.metadata_path == os.path.abspath(".streamenrich/kinesis-metadata")
    assert parsed.max_partitions is None
    assert opt.SourceOptions.parse({"streamName": "s", "MAXPARTITIONS": "3"}).max_partitions == 3
    assert parsed.fail_on_data_loss is opt.DEFAULT_FAIL_ON_DATA_LOSS is True
    relaxed = opt.SourceOptions.parse({"streamName": "s", "failondataloss": " False "})
    assert relaxed.fail_on_data_loss is False


def test_no_endpoint_override_means_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_KINESIS", raising=False)
    assert opt.SourceOptions.parse({"streamName": "s"}).endpoint_url is None
    assert opt.SinkOptions.parse({"streamName": "s"}).endpoint_url is None


def test_options_win_over_environment_and_keys_ignore_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    parsed = opt.SourceOptions.parse(
        {
            "streamname": "s",
            "REGION": "eu-west-1",
            "endpointurl": "http://127.0.0.1:1",
            "startingposition": "latest",
            "maxrecordspershard": "250",
            "maxfetchtimems": "75",
            "metadatapath": "/var/tmp/meta",
        }
    )
    assert (parsed.region, parsed.endpoint_url) == ("eu-west-1", "http://127.0.0.1:1")
    assert parsed.starting_position == ShardPosition.latest()
    assert (parsed.max_records_per_shard, parsed.max_fetch_time_ms) == (250, 75)
    assert parsed.metadata_path == "/var/tmp/meta"


def test_at_timestamp_position() -> None:
    parsed = opt.parse_starting_position("AT_TIMESTAMP:2026-03-01T12:00:00Z")
    expected = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp() * 1000)
    assert parsed == ShardPosition.at_timestamp(expected)
    naive = opt.parse_starting_position("AT_TIMESTAMP:2026-03-01T12:00:00")
    assert naive == parsed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option 'streamName' is required"),
        ({"streamName": "  "}, "option 'streamName' is required"),
        ({"streamName": "s", "maxRecordsPerShard": "0"}, "'maxRecordsPerShard' must be a positive"),
        (
            {"streamName": "s", "maxRecordsPerShard": "ten"},
            "'maxRecordsPerShard' must be a positive",
        ),
        ({"streamName": "s", "maxFetchTimeMs": "-5"}, "'maxFetchTimeMs' must be a positive"),
        ({"streamName": "s", "maxPartitions": "0"}, "'maxPartitions' must be a positive"),
        ({"streamName": "s", "startingPosition": "EARLIEST"}, "option 'startingPosition' must be"),
        ({"streamName": "s", "startingPosition": "AT_TIMESTAMP:yesterday"}, "'startingPosition'"),
        ({"streamName": "s", "maxRecords": "5"}, "unknown option 'maxRecords'"),
        ({"streamName": "s", "failOnDataLoss": "no"}, "'failOnDataLoss' must be true or false"),
    ],
)
def test_bad_source_options_name_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        opt.SourceOptions.parse(options)


def test_region_is_required_somewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(OptionError, match="option 'region' is not set"):
        opt.SinkOptions.parse({"streamName": "s"})


def test_sink_rejects_source_only_options() -> None:
    with pytest.raises(OptionError, match="unknown option 'startingPosition'"):
        opt.SinkOptions.parse({"streamName": "s", "startingPosition": "LATEST"})
    # Spark's own writer options are not ours to reject.
    assert opt.SinkOptions.parse({"streamName": "s", "checkpointLocation": "/c", "path": "x"})


@pytest.mark.parametrize(
    "text",
    [
        "TRIM_HORIZON",
        "LATEST",
        "SHARD_END",
        "AT_TIMESTAMP:1767225600000",
        "AT_SEQUENCE_NUMBER:49590338271490256608559692538361571095921575989136588898",
        "AFTER_SEQUENCE_NUMBER:7",
    ],
)
def test_positions_round_trip(text: str) -> None:
    assert str(ShardPosition.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["", "BEGIN", "AFTER_SEQUENCE_NUMBER:", "AFTER_SEQUENCE_NUMBER:x", "LATEST:1"]
)
def test_bad_positions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="position"):
        ShardPosition.parse(text)


def test_iterator_arguments() -> None:
    assert ShardPosition.after("42").iterator_args() == {
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "42",
    }
    stamp = ShardPosition.at_timestamp(1_000).iterator_args()
    assert stamp["ShardIteratorType"] == "AT_TIMESTAMP"
    assert stamp["Timestamp"] == datetime.fromtimestamp(1, tz=UTC)
    with pytest.raises(ValueError, match="drained"):
        ShardPosition.shard_end().iterator_args()
