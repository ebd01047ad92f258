"""Benchmarks: the factory measured against the batch system's and the WMS's own cost (make bench)."""
