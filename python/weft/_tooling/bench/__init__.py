"""Benchmark workloads shared by ``python -m weft`` and benchmarks/."""
