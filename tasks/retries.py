"""Which failures a task retries: only transient AWS and network errors."""

from __future__ import annotations

from typing import Any

from streamenrich.kinesis.client import is_transient


def failure_of(state: Any) -> BaseException | None:
    """The exception a failed Prefect state holds, if any."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # the result itself may be unreadable: that is the failure
        return exc
    return result if isinstance(result, BaseException) else None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry throttling, busy services and network errors only."""
    return is_transient(failure_of(state))
