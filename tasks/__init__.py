"""Prefect tasks: thin, typed, retried wrappers around the streamenrich library."""
