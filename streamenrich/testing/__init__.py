"""Tools for testing and benchmarking against local Kinesis endpoints."""
