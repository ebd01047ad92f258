"""Command-line entry points: ``autopyfactory`` (the daemon) and ``apf`` (the operator's tool)."""

from __future__ import annotations

import sys

from autopyfactory.config import ConfigError, FactoryConfig, load, placeholders


def load_or_report(path: str) -> FactoryConfig | None:
    """The validated config, warnings on stderr; or None after printing one line per problem."""
    try:
        config = load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        for warning in exc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return None
    unset = placeholders(config)
    for problem in unset:
        print(problem)
    if unset:
        return None
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config
