"""Prefect flows: which steps run, in what order, with which parameters."""
