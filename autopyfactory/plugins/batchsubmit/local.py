"""Submit pilots to the Local batch system (local processes)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import time

from autopyfactory.config import Key
from autopyfactory.interfaces import BatchSubmitPlugin, SubmitResult
from autopyfactory.localbatch import LocalBatch
from autopyfactory.paths import default_executable
from autopyfactory.redact import redact_data

log = logging.getLogger(__name__)

class Local(BatchSubmitPlugin):
    """Starts pilots as local processes, at most ``maxrunning`` at once per queue.

    Keys: ``batchsubmit.local.maxrunning`` (4). Runs ``executable`` (default:
    the shipped ``apf-wrapper.sh``) with ``executable.arguments`` split like a
    shell would, but without a shell. Logs: ``<baseLogDir>/<date>/<queue>/
    <cluster>.<proc>.out|err`` and the submit description ``<cluster>.jdl``.
    Removal takes only pilots that have not started.
    """

    name = "Local"
    keys = {"maxrunning": Key("int", 4, min=1, help="pilots of this queue running at once")}

    @property
    def batch(self) -> LocalBatch:
        return self.context.shared("localbatch", LocalBatch)

    def argv(self) -> list[str]:
        executable = self.queue.values.get("executable") or default_executable()
        return [executable, *shlex.split(self.queue.values.get("executable.arguments") or "")]

    def submit(self, n: int) -> SubmitResult:
        logdir = self.context.logdir(self.queue.name)
        extra = self.context.wms_environment(self.queue)

        def environment(jobid: str, out: str) -> dict[str, str]:
            return {**self.context.pilot_environment(self.queue, jobid, out), **extra}

        argv = self.argv()
        ids = self.batch.submit(self.queue.name, self.context.factory_id, argv, n, logdir,
                                self.options["maxrunning"], environment)
        # the pilots are in the batch system now: nothing that fails below may lose their count
        cluster = ids[0].split(".")[0] if ids else "none"
        try:
            with open(os.path.join(logdir, f"{cluster}.jdl"), "w") as jdl:
                # a record for people, served under /logs/: no secret in it
                json.dump(redact_data({"queue": self.queue.name, "argv": argv, "count": n, "ids": ids,
                                       "environment": extra, "time": time.time()}), jdl, indent=2)
        except OSError as exc:
            log.error("queue %s: %d pilots submitted, but their submit description was not written: %s",
                      self.queue.name, len(ids), exc)
            return SubmitResult(len(ids), ids, message=f"Local: {cluster}.jdl not written ({exc})")
        return SubmitResult(len(ids), ids)

    def remove(self, n: int) -> SubmitResult:
        ids = self.batch.remove_pending(self.queue.name, n)
        return SubmitResult(len(ids), ids)
