"""The performance harness: `python -m benchmarks --rows N` (see benchmarks/README.md)."""
