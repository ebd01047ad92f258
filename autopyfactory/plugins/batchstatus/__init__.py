"""Batch status plugins: how many pilots each queue has in the batch system."""
