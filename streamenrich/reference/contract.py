"""The reference registry's data contract: columns, types and the allowed values."""

from __future__ import annotations

# Column order is the contract: CSV files have exactly these columns, in this order.
REGISTRY_COLUMNS: tuple[str, ...] = (
    "rut",
    "full_name",
    "segment",
    "region",
    "risk_level",
    "watchlist",
    "credit_limit",
)
REGISTRY_SCHEMA = (
    "rut STRING, full_name STRING, segment STRING, region STRING, risk_level STRING, "
    "watchlist BOOLEAN, credit_limit BIGINT"
)
SEGMENTS: tuple[str, ...] = ("retail", "premium", "private", "sme", "corporate")
RISK_LEVELS: tuple[str, ...] = ("low", "medium", "high")
# Chile's 16 regions, as ISO 3166-2:CL codes.
REGIONS: tuple[str, ...] = (
    "CL-AP",
    "CL-TA",
    "CL-AN",
    "CL-AT",
    "CL-CO",
    "CL-VS",
    "CL-RM",
    "CL-LI",
    "CL-ML",
    "CL-NB",
    "CL-BI",
    "CL-AR",
    "CL-LR",
    "CL-LL",
    "CL-AI",
    "CL-MA",
)
# Credit limits in CLP: zero up to one billion pesos.
CREDIT_LIMIT_MIN = 0
CREDIT_LIMIT_MAX = 1_000_000_000
