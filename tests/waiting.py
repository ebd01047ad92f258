"""Wait on behaviour instead of sleeping: the one poll-until-true helper.

Tests import it from tests/conftest.py; code that runs without pytest (the
benchmarks in bench/, tests/slurmcluster.py) imports it from here.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], what: str = "condition", *,
             timeout: float = 60.0, every: float = 0.05):
    """Poll ``predicate`` until it returns something true, and return that.

    A predicate may also assert: an ``AssertionError`` counts as "not yet".
    After ``timeout`` seconds fail, naming ``what`` and the last answer.
    Deadlines are generous because the machine may be loaded: they only
    bound how long a broken run takes to fail.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = predicate()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM a factory subprocess, SIGKILL it if it does not stop within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
