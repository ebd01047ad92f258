"""``apf``: the operator's tool."""

from __future__ import annotations

import argparse
import json
import os
import sys

from autopyfactory import __version__
from autopyfactory.cli import control, cric, load_or_report, replay, simulate
from autopyfactory.cli.daemon import DEFAULT_CONF
from autopyfactory.config import (
    FACTORY_KEYS,
    QUEUE_KEYS,
    FactoryConfig,
    QueueConfig,
    plugin_key_table,
)


def check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.conf)
    if config is None:
        return 2
    effective = effective_config(config)
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print_config(effective)
    return 0


def effective_config(config: FactoryConfig) -> dict:
    """What the factory will really use: keys as the operator writes them, defaults and paths resolved."""
    from autopyfactory.paths import default_executable
    from autopyfactory.plugins.wmsstatus.local import spooldir

    names = {key.lower(): key for key in FACTORY_KEYS}
    factory = {names.get(k, k): v for k, v in config.factory.values.items()}
    factory["persistence.dbpath"] = config.persistence_path
    names.update({key.lower(): key for key in QUEUE_KEYS})
    names.update({lower: full for lower, (full, _) in
                  plugin_key_table(config.registry).items()})
    queues = {}
    for queue in config.queues.values():
        values = {names.get(k, k): v for k, v in queue.values.items()}
        values.update(wmsqueue=queue.wmsqueue, batchqueue=queue.batchqueue,
                      executable=values.get("executable") or default_executable())
        if queue.values.get("wmsstatusplugin") == "Local":
            values["wmsstatus.local.spooldir"] = spooldir(queue.plugin_options(config.registry.get("wmsstatus", "Local")), config)
        queues[queue.name] = {"source": queue.source, "enabled": running(config, queue), "values": values}
    return {"file": config.path, "factory": factory, "queues": queues}


def running(config: FactoryConfig, queue: QueueConfig) -> bool:
    return bool(queue.enabled and config.get("enablequeues"))


def print_config(effective: dict) -> None:
    print(f"# {effective['file']}")
    print("[Factory]")
    for key, value in sorted(effective["factory"].items(), key=lambda item: item[0].lower()):
        print(f"{key} = {show(value)}")
    for name, queue in effective["queues"].items():
        print(f"\n# {queue['source']} ({'enabled' if queue['enabled'] else 'disabled'})")
        print(f"[{name}]")
        for key, value in sorted(queue["values"].items(), key=lambda item: item[0].lower()):
            print(f"{key} = {show(value)}")


def show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apf", description="AutoPyFactory operator's tool")
    p.add_argument("--version", action="version", version=f"apf (autopyfactory) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate the configuration and print what will be used")
    check.add_argument("--conf", default=DEFAULT_CONF)
    check.add_argument("--json", action="store_true", help="print it as JSON")
    check.set_defaults(func=check_config)
    simulate.add_parser(sub)
    cric.add_parser(sub)
    replay.add_parser(sub)
    control.add_parsers(sub, DEFAULT_CONF)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (apf check-config | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
