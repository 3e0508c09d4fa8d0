"""Benchmarks: each prints comparable figures and ends with a RESULT line."""
