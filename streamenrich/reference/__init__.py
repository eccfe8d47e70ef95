"""The reference registry: RUT handling, loading, generation and validation."""
