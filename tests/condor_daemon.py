"""``python -m tests.condor_daemon ARGS``: the real daemon, in the foreground, with HTCondor's wire calls
answered by a schedd double (tests/condordouble.py): no schedd can run on these machines. Everything
above the bindings' wire calls is the real factory and the real htcondor2 library."""

from __future__ import annotations

import sys

import pytest

from autopyfactory.cli import daemon
from tests.condordouble import CondorPool, ScheddDouble


def main(argv: list[str]) -> int:
    pool = CondorPool().install(pytest.MonkeyPatch())
    pool.local_collector = "cm.example.org:9618"
    pool.add_schedd(ScheddDouble(), "<192.0.2.10:9618>", collector=pool.local_collector)
    return daemon.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
