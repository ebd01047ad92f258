"""``autopyfactory``: the factory daemon."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys

from autopyfactory import __version__
from autopyfactory.config import ConfigError, load
from autopyfactory.factory import Factory

DEFAULT_CONF = "/etc/apf/factory.conf"
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autopyfactory", description="AutoPyFactory pilot factory daemon")
    p.add_argument("--conf", default=DEFAULT_CONF, help=f"factory.conf (default {DEFAULT_CONF})")
    p.add_argument("--foreground", action="store_true", help="do not detach")
    p.add_argument("--cycles", type=int, default=None, metavar="N",
                   help="run N cycles of every queue, then exit 0")
    p.add_argument("--runas", default=None, metavar="USER", help="drop privileges to USER")
    p.add_argument("--log", default="stdout", metavar="PATH|stdout|syslog")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--pidfile", default=None, metavar="PATH")
    p.add_argument("--version", action="version", version=f"autopyfactory {__version__}")
    return p


def setup_logging(target: str, level: str) -> logging.Handler:
    if target == "stdout":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif target == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(target)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load(args.conf)
    except ConfigError as exc:
        print(f"autopyfactory: refusing to start, {len(exc.problems)} problem(s) in the configuration:",
              file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    setup_logging(args.log, args.loglevel)
    log = logging.getLogger("autopyfactory")
    for warning in config.warnings:
        log.warning("config: %s", warning)
    if not args.foreground:
        log.warning("detaching is not available yet: running in the foreground")
    from autopyfactory.plugins.registry import PluginRegistry

    registry = PluginRegistry.discover(config.get("plugindirs"))
    factory = Factory(config, registry)

    def on_signal(signum, frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        factory.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    factory.start(cycles=args.cycles)
    try:
        factory.wait()
    finally:
        factory.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
