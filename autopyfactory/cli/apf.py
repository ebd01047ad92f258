"""``apf``: the operator's tool."""

from __future__ import annotations

import argparse
import sys

from autopyfactory.cli import control, load_or_report, replay, simulate
from autopyfactory.cli.daemon import DEFAULT_CONF
from autopyfactory.config import FactoryConfig


def check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.conf)
    if config is None:
        return 2
    print_config(config)
    return 0


def print_config(config: FactoryConfig) -> None:
    print(f"# {config.path}")
    print(f"[{config.factory.name}]")
    for key, value in sorted(config.factory.values.items()):
        print(f"{key} = {show(value)}")
    for queue in config.queues.values():
        state = "enabled" if queue.enabled and config.get("enablequeues") else "disabled"
        print(f"\n# {queue.source} ({state})")
        print(f"[{queue.name}]")
        for key, value in sorted(queue.values.items()):
            print(f"{key} = {show(value)}")


def show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apf", description="AutoPyFactory operator's tool")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate the configuration and print it")
    check.add_argument("--conf", default=DEFAULT_CONF)
    check.set_defaults(func=check_config)
    simulate.add_parser(sub)
    replay.add_parser(sub)
    control.add_parsers(sub, DEFAULT_CONF)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
