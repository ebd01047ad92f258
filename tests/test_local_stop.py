"""Stopping the factory never drops pending Local pilots silently.

The Local batch system lives inside the factory: pilots still waiting for a
slot when it stops can never start. They were counted as submitted and then
vanished; now each ends as *removed*, with a line in its .err file, and one
warning says how many per queue.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tests.conftest import wait_for
from tests.web_support import start_factory


def test_pending_local_pilots_end_as_removed_with_a_reason(confdir, caplog):
    caplog.set_level(logging.WARNING, logger="autopyfactory.localbatch")
    run = start_factory(confdir, {"Q1": 3}, maxrunning=1)
    batch = run.batch
    try:
        counts = wait_for(lambda: (lambda s: s if (s.running, s.pending) == (1, 2) else None)(
            batch.status(["Q1"], run.factory.context.factory_id)["Q1"]), what="one pilot running, two pending")
        assert counts.pending == 2
        pending = [p for p in batch._pilots.values() if p.state == "pending"]
        run.factory.stop()  # what SIGTERM does
        after = batch.status(["Q1"], run.factory.context.factory_id)["Q1"]
        assert after.pending == 0 and after.running == 1
        removed = [f for f in after.finished if f.state == "removed"]
        assert sorted(f.jobid for f in removed) == sorted(p.jobid for p in pending)
        warnings = [r.getMessage() for r in caplog.records if r.name == "autopyfactory.localbatch"]
        assert warnings == ["factory stopping: 2 local pilot(s) still pending never start, removed (Q1: 2)"]
        for pilot in pending:
            assert "never started: the factory stopped" in Path(pilot.err).read_text()
    finally:
        run.stop_file.touch()
        run.factory.stop()
