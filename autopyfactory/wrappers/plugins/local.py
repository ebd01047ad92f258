"""Pilot plugin ``local``: takes one work item of the Local WMS and runs it.

The spool comes from ``--wrapperserverurl file://DIR`` or ``$APF_WMS_SPOOLDIR``;
work items are ``<spool>/<wmsqueue>/*.json`` holding ``{"command": [argv...],
"timeout": seconds}``. An item is claimed by renaming it into ``claimed/``
(another pilot racing for it simply loses), run without a shell, and its
result written to ``done/``. No work is a normal end (status nowork, exit 0).
"""

import json
import os
import socket
import subprocess
import time

NAME = "local"


def claim(directory):
    claimed = os.path.join(directory, "claimed")
    os.makedirs(claimed, exist_ok=True)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return None
    for name in names:
        target = os.path.join(claimed, name)
        try:
            os.rename(os.path.join(directory, name), target)
        except FileNotFoundError:
            continue
        return name, target
    return None


def spool_of(options):
    url = options.serverurl
    if url.startswith("file://"):
        return url[len("file://"):]
    return os.environ.get("APF_WMS_SPOOLDIR", "")


def run(ctx):
    options = ctx.options
    spool = spool_of(options)
    if not spool or not options.wmsqueue:
        ctx.log.error("local pilot needs --wrapperwmsqueue and a spool (--wrapperserverurl file://DIR)")
        return "badoptions", 66
    directory = os.path.join(spool, options.wmsqueue)
    item = claim(directory)
    if item is None:
        print(f"no work in {directory}", flush=True)
        return "nowork", 0
    name, path = item
    try:
        with open(path) as handle:
            work = json.load(handle)
        command = work["command"]
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise ValueError("command must be a non-empty list of strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        ctx.log.error("bad work item %s: %s", name, exc)
        code, status = 67, "badwork"
    else:
        print(f"running work item {name}: {command}", flush=True)
        started = time.time()
        try:
            code = ctx.run_payload(command, timeout=work.get("timeout"))
        except (OSError, subprocess.TimeoutExpired) as exc:
            ctx.log.error("work item %s failed: %s", name, exc)
            code = 68
        status = "ok" if code == 0 else "workfailed"
        print(f"work item {name} ended with exit code {code} after {time.time() - started:.1f}s", flush=True)
    done = os.path.join(directory, "done")
    os.makedirs(done, exist_ok=True)
    with open(os.path.join(done, name), "w") as handle:
        json.dump({"exitcode": code, "pilot": os.environ.get("APFCID", ""),
                   "host": socket.gethostname(), "end": time.time()}, handle)
    os.unlink(path)
    return status, code
