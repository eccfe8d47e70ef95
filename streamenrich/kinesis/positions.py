"""Where a shard read starts: a small closed set of positions, serialised as short strings.

Positions travel inside Spark's offset JSON, so each one has a stable string form:

>>> ShardPosition.parse("AFTER_SEQUENCE_NUMBER:4962")
ShardPosition(kind='AFTER_SEQUENCE_NUMBER', sequence_number='4962', timestamp_ms=None)
>>> str(ShardPosition.trim_horizon())
'TRIM_HORIZON'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

PositionKind = Literal[
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "SHARD_END",
]

_KINDS: tuple[str, ...] = get_args(PositionKind)


@dataclass(frozen=True)
class ShardPosition:
    """A position in one shard.

    ``SHARD_END`` is not a Kinesis iterator type: it marks a closed shard that has been read to
    its end, which is what lets its children start.
    """

    kind: PositionKind
    sequence_number: str | None = None
    timestamp_ms: int | None = None

    @classmethod
    def trim_horizon(cls) -> ShardPosition:
        return cls("TRIM_HORIZON")

    @classmethod
    def latest(cls) -> ShardPosition:
        return cls("LATEST")

    @classmethod
    def shard_end(cls) -> ShardPosition:
        return cls("SHARD_END")

    @classmethod
    def at_timestamp(cls, when: datetime | int) -> ShardPosition:
        if isinstance(when, datetime):
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            when = int(when.timestamp() * 1000)
        return cls("AT_TIMESTAMP", timestamp_ms=when)

    @classmethod
    def after(cls, sequence_number: str) -> ShardPosition:
        return cls("AFTER_SEQUENCE_NUMBER", sequence_number=sequence_number)

    @classmethod
    def at(cls, sequence_number: str) -> ShardPosition:
        return cls("AT_SEQUENCE_NUMBER", sequence_number=sequence_number)

    @classmethod
    def parse(cls, text: str) -> ShardPosition:
        """Parse the string form; raises ``ValueError`` naming the text when it is not one."""
        kind, _, arg = text.partition(":")
        if kind not in _KINDS:
            raise ValueError(f"not a shard position: {text!r}")
        if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if not arg.isdigit():
                raise ValueError(f"position {text!r} needs a decimal sequence number")
            return cls(kind, sequence_number=arg)  # type: ignore[arg-type]
        if kind == "AT_TIMESTAMP":
            if not arg.lstrip("-").isdigit():
                raise ValueError(f"position {text!r} needs a timestamp in epoch milliseconds")
            return cls("AT_TIMESTAMP", timestamp_ms=int(arg))
        if arg:
            raise ValueError(f"position {kind} takes no argument: {text!r}")
        return cls(kind)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.sequence_number is not None:
            return f"{self.kind}:{self.sequence_number}"
        if self.timestamp_ms is not None:
            return f"{self.kind}:{self.timestamp_ms}"
        return self.kind

    @property
    def is_shard_end(self) -> bool:
        return self.kind == "SHARD_END"

    def iterator_args(self) -> dict[str, Any]:
        """Keyword arguments for ``GetShardIterator`` that start at this position."""
        if self.kind == "SHARD_END":
            raise ValueError("a drained shard has no iterator")
        args: dict[str, Any] = {"ShardIteratorType": self.kind}
        if self.sequence_number is not None:
            args["StartingSequenceNumber"] = self.sequence_number
        if self.timestamp_ms is not None:
            args["Timestamp"] = datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)
        return args
