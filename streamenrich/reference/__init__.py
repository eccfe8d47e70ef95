"""The reference registry: RUT handling, loading, generation and validation.

``validate_registry`` and its report types load Great Expectations (seconds) on first use,
so importing this package, or ``streamenrich.reference.rut``, stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamenrich.reference.registry import RegistryFileError, load_registry

if TYPE_CHECKING:
    from streamenrich.reference.validation import (
        ExpectationResult,
        ValidationReport,
        validate_registry,
    )

__all__ = [
    "ExpectationResult",
    "RegistryFileError",
    "ValidationReport",
    "load_registry",
    "validate_registry",
]
_LAZY = {"ExpectationResult", "ValidationReport", "validate_registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("streamenrich.reference.validation"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
