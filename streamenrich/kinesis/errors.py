"""Domain exceptions of the Kinesis source and sink.

Every error raised in the data path is one of these (or a botocore error re-raised with
context), so a failed micro-batch names the stream, the shard and the AWS error code.
"""

from __future__ import annotations


class KinesisError(Exception):
    """Base class of every error raised by ``streamenrich.kinesis``."""


class OptionError(KinesisError, ValueError):
    """A source or sink option is missing or has a bad value; the message names the option."""


class SchemaError(KinesisError, ValueError):
    """The DataFrame given to the sink has a column the sink does not accept."""


class KinesisCallError(KinesisError):
    """A Kinesis API call failed with an error that is not transient (or stayed throttled)."""


class ShardReadError(KinesisCallError):
    """Reading a shard failed with an error that is not transient."""


class PutRecordsError(KinesisError):
    """Records could not be written to the output stream after the retries allowed."""


class RecordTooLargeError(PutRecordsError):
    """A record exceeds the Kinesis limit of 1 MiB (data plus partition key)."""


class MetadataError(KinesisError):
    """The per-batch shard positions kept under ``metadataPath`` are missing or unreadable."""


class DataLossError(KinesisError):
    """Records the source should have read are gone (trimmed by retention, or their shard
    expired) and ``failOnDataLoss`` is true; the message names the shard and the range."""
