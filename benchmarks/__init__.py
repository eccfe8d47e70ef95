"""Performance benchmarks; run them all with ``uv run python benchmarks/run.py --out FILE``."""
