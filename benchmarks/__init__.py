"""Benchmark harness: networks, data, training, evaluation and reporting."""
