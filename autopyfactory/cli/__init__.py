"""Command-line entry points: ``autopyfactory`` (the daemon) and ``apf`` (the operator's tool)."""
