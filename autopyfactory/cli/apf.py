"""``apf``: the operator's tool."""

from __future__ import annotations

import argparse
import json
import os
import sys

from autopyfactory import __version__, journal
from autopyfactory.cli import control, cric, load_or_report, local, replay, simulate
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
    add_control_parsers(sub, DEFAULT_CONF)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "local", False) or (not args.url and not control.web_server_enabled(args.conf)):
            if args.command not in local.LOCAL:
                raise control.ControlError(f"the factory has no web server to ask (logserver.enabled = False in "
                                   f"{args.conf}): {WITHOUT_WEB.get(args.command, WITHOUT_WEB['*'])}", 3)
            return local.LOCAL[args.command](args)
        return args.action(args, control.client_for(args)) or 0
    except control.ControlError as exc:
        print(f"apf {args.command}: {exc}", file=sys.stderr)
        return exc.code


# what an operator does instead when there is no web server (``apf status``, ``config`` and ``audit`` read
# the local files: autopyfactory/cli/local.py)
WITHOUT_WEB = {
    "reload": "reload with systemctl reload autopyfactory (or kill -HUP on the daemon)",
    "stop": "stop with systemctl stop autopyfactory (or kill -TERM on the daemon)",
    "threads": "kill -USR1 on the daemon logs every thread's stack",
    "*": "set logserver.enabled = True (bound to 127.0.0.1 by default) and restart to use it",
}


def add_control_parsers(sub: argparse._SubParsersAction, default_conf: str) -> None:
    """Register the commands that act on a running factory (autopyfactory/cli/control.py), or on its
    local files when it has no web server (autopyfactory/cli/local.py)."""

    def command(name: str, action, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--conf", default=default_conf, help=f"factory.conf to find the factory (default {default_conf})")
        p.add_argument("--url", default=None, help="the factory's web server, e.g. http://127.0.0.1:25880")
        p.add_argument("--token-file", default=None, help="admin token file (default: admin.tokenfile)")
        p.set_defaults(func=run, action=action)
        return p

    status = command("status", control.cmd_status, "show the health of a running factory's queues; exits like a "
                     "monitoring check: 0 ok, 1 warning, 2 critical, 3 unreachable")
    status.add_argument("queue", nargs="?", default=None, help="only this queue")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    local = ("read the configuration files and the local store (persistence.dbpath) instead of asking the "
             "web server; the default when logserver.enabled = False")
    status.add_argument("--local", action="store_true", help=local)
    command("reload", control.cmd_reload, "re-read the configuration of a running factory")
    for name, help in (("pause", "stop a queue submitting (it keeps reporting)"),
                       ("drain", "stop a queue submitting and remove its pilots that have not started")):
        hold = command(name, control.cmd_pause, help)
        hold.add_argument("queue")
        hold.add_argument("--reason", default="", help="why (shown on the status page, the API and the audit trail)")
        hold.add_argument("--until", default=None, metavar="TIME",
                          help="resume by itself then: ISO 8601 (2026-12-02T06:00Z, UTC without a zone) "
                               "or relative (+2h, 30m, 90s, 1d)")
    command("resume", control.cmd_pause, "let a paused or drained queue submit again").add_argument("queue")
    command("loglevel", control.cmd_loglevel, "change the factory's log level").add_argument(
        "level", choices=["debug", "info", "warning", "error"])
    config = command("config", control.cmd_config, "show the running factory's configuration (secrets redacted)")
    config.add_argument("--json", action="store_true", help="print the raw JSON")
    config.add_argument("--local", action="store_true", help=local)
    log = command("log", control.cmd_log, "show the end of the running factory's own log (under systemd: its journal)")
    log.add_argument("-n", "--lines", type=int, default=100, help="how many lines (default 100, at most 10000)")
    log.add_argument("--unit", default=None, help="the systemd unit whose journal to read when the factory logs to "
                     f"the journal (default: the one the factory runs in, else {journal.DEFAULT_UNIT})")
    log.add_argument("--local", action="store_true", help="read the journal here without asking the web "
                     "server; the default when logserver.enabled = False")
    audit = command("audit", control.cmd_audit, "show the latest admin actions (who, when, what, result)")
    audit.add_argument("-n", "--limit", type=int, default=50, help="how many actions (default 50)")
    audit.add_argument("--json", action="store_true", help="print the raw JSON")
    audit.add_argument("--local", action="store_true", help=local)
    history = command("history", control.cmd_history, "show a queue's latest cycles: what it saw, decided and submitted")
    history.add_argument("queue")
    history.add_argument("-n", "--cycles", type=int, default=20, help="how many cycles (default 20)")
    history.add_argument("--json", action="store_true", help="print the raw JSON")
    history.add_argument("--local", action="store_true", help=local)
    command("stop", control.cmd_stop, "stop the running factory gracefully (as SIGTERM)")
    command("threads", control.cmd_threads, "show every thread's stack in the running factory (as SIGUSR1 logs it)")
    command("debug", control.cmd_debug, "show the running factory's versions, config sources, endpoints and store").add_argument(
        "--json", action="store_true", help="print the raw JSON")


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
