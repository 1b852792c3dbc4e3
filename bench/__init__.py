"""Benchmarks: `make bench` measures the machine's ceilings and every service in one run."""
