"""Benchmarks: ``python -m bench [name ...]`` runs them and rewrites docs/BENCHMARKS.md."""
