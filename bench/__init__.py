"""Benchmarks: towline against bare Temporal, side by side (see README.md)."""
