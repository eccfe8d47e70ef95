"""Token buckets and a clock a test can move by hand, for the AWS-semantics proxy.

Rate limits are decided on an injected clock (``Callable[[], float]``, seconds since the
epoch): the real one (:func:`time.time`) in benchmarks, a :class:`ManualClock` in tests, so
"which calls are throttled" depends on the call pattern alone, never on how busy the
machine is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class ManualClock:
    """A clock that moves only when told: ``clock.advance(1.0)``.

    It starts at the wall-clock time of its creation (``start`` overrides), so arrival
    stamps read from an upstream server and this clock's time stay comparable.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds}")
        with self._lock:
            self._now += seconds
            return self._now


@dataclass
class TokenBucket:
    """``rate`` units a second, at most ``capacity`` saved up; starts full.

    :meth:`take` is all or nothing (call counts, records); :meth:`spend` lets the level go
    below zero (bytes: a reply's size is known only after it was read, and a debt is paid
    back by refilling, as the shard's average rate allows). Not thread-safe: the proxy holds
    its lock around every use.
    """

    rate: float
    capacity: float
    level: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float, capacity: float | None = None) -> TokenBucket:
        cap = rate if capacity is None else capacity
        return cls(rate=rate, capacity=cap, level=cap, updated=now)

    @property
    def _slack(self) -> float:
        # Epoch seconds are ~2e9, so a float sum like now + 0.2 is off by up to ~2.4e-7 s:
        # a microsecond's worth of refill is forgiven, so 0.2 s at 5/s is exactly one call.
        return self.rate * 1e-6

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` if the bucket holds it; ``False`` (and nothing taken) if not."""
        self.refill(now)
        if self.level + self._slack < amount:
            return False
        self.level -= amount
        return True

    def has_credit(self, now: float) -> bool:
        """Whether the bucket is above zero (a caller may then :meth:`spend` any amount)."""
        self.refill(now)
        return self.level > self._slack

    def spend(self, amount: float, now: float) -> None:
        """Take ``amount`` even if that leaves a debt."""
        self.refill(now)
        self.level -= amount

    def pause_until(self, until: float) -> None:
        """No refill before ``until``: a penalty during which the bucket stays as it is."""
        self.level = min(self.level, 0.0)
        self.updated = max(self.updated, until)
