"""Batch submit plugins: put pilots into a batch system, remove idle ones."""
