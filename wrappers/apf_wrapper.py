"""Python stage of the pilot wrapper: choose the pilot plugin, run it, report how it ended.

Options (APF 2.4 names): --wrappervo --wrapperwmsqueue --wrapperbatchqueue
--wrappergrid --wrapperpurpose --wrapperserverurl --wrapperplugin
--wrapperpilottype --wrapperloglevel --wrappermode.

Built-in pilot plugin ``local``: claims one work item of the Local WMS
(``<spool>/<wmsqueue>/*.json``, spool from --wrapperserverurl file://... or
$APF_WMS_SPOOLDIR) by renaming it into ``claimed/``, runs its ``command``
(an argv list, no shell) and records the result in ``done/``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

OPTIONS = ["vo", "wmsqueue", "batchqueue", "grid", "purpose", "serverurl", "plugin",
           "pilottype", "loglevel", "mode"]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="apf-wrapper")
    for name in OPTIONS:
        p.add_argument(f"--wrapper{name}", dest=name, default="")
    args, _ = p.parse_known_args(argv)
    return args


def end(status: str, code: int) -> int:
    print(f"APF-WRAPPER-END status={status} exit={code}", flush=True)
    return code


def claim(directory: str) -> tuple[str, str] | None:
    """Take one item by renaming it; another pilot racing for it simply loses."""
    claimed = os.path.join(directory, "claimed")
    os.makedirs(claimed, exist_ok=True)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return None
    for name in names:
        target = os.path.join(claimed, f"{name}")
        try:
            os.rename(os.path.join(directory, name), target)
        except FileNotFoundError:
            continue
        return name, target
    return None


def run_local(args: argparse.Namespace) -> int:
    spool = args.serverurl.removeprefix("file://") if args.serverurl.startswith("file://") else ""
    spool = spool or os.environ.get("APF_WMS_SPOOLDIR", "")
    if not spool or not args.wmsqueue:
        print("local pilot needs --wrapperwmsqueue and a spool (--wrapperserverurl file://DIR)", file=sys.stderr)
        return end("badoptions", 66)
    directory = os.path.join(spool, args.wmsqueue)
    item = claim(directory)
    if item is None:
        print(f"no work in {directory}", flush=True)
        return end("nowork", 0)
    name, path = item
    try:
        with open(path) as handle:
            work = json.load(handle)
        command = work["command"]
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise ValueError("command must be a list of strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bad work item {name}: {exc}", file=sys.stderr)
        code, status = 67, "badwork"
    else:
        print(f"running work item {name}: {command}", flush=True)
        started = time.time()
        try:
            code = subprocess.call(command, timeout=work.get("timeout"))
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"work item {name} failed: {exc}", file=sys.stderr)
            code = 68
        status = "ok" if code == 0 else "workfailed"
        print(f"work item {name} ended with exit code {code} after {time.time() - started:.1f}s")
    done = os.path.join(directory, "done")
    os.makedirs(done, exist_ok=True)
    with open(os.path.join(done, name), "w") as handle:
        json.dump({"exitcode": code, "pilot": os.environ.get("APFCID", ""),
                   "host": socket.gethostname(), "end": time.time()}, handle)
    os.unlink(path)
    return end(status, code)


PILOTS = {"local": run_local}


def main(argv: list[str]) -> int:
    args = parse(argv)
    plugin = (args.plugin or "local").lower()
    if plugin not in PILOTS:
        print(f"unknown pilot plugin {plugin!r} (known: {', '.join(PILOTS)})", file=sys.stderr)
        return end("badplugin", 70)
    return PILOTS[plugin](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
