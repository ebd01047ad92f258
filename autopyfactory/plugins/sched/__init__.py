"""Scheduler plugins: the chain that decides how many pilots a queue gets each cycle."""
