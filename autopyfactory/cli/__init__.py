"""Command-line entry points: ``autopyfactory`` (the daemon) and ``apf`` (the operator's tool)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from autopyfactory.config import ConfigError, FactoryConfig, load, placeholders
from autopyfactory.redact import redact


def load_or_report(path: str) -> FactoryConfig | None:
    """The validated config, warnings on stderr; or None after printing one line per problem (redacted)."""
    try:
        config = load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)))
        for warning in exc.warnings:
            print(redact(f"warning: {warning}"), file=sys.stderr)
        return None
    unset = placeholders(config)
    for problem in unset:
        print(redact(str(problem)))
    if unset:
        return None
    for warning in config.warnings:
        print(redact(f"warning: {warning}"), file=sys.stderr)
    return config


def number(kind: type[int] | type[float], *, at_least: float | None = None,
           more_than: float | None = None) -> Callable[[str], int | float]:
    """An argparse type: an integer or a number (``kind``) within a bound; the error says what was expected."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"expected at least {at_least:g}, got {text!r}")
        if more_than is not None and value <= more_than:
            raise argparse.ArgumentTypeError(f"expected more than {more_than:g}, got {text!r}")
        return value
    return parse
