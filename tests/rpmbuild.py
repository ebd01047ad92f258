"""The RPMs built once per test session with rpm/build-rpm.sh (fixture ``rpms``: target -> RPM file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory import __version__

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("el9", "el10")


@pytest.fixture(scope="session")
def rpms(tmp_path_factory) -> dict[str, Path]:
    if not shutil.which("rpmbuild"):
        pytest.fail("rpmbuild is missing: tests/services/rpm.sh installs it (make test runs it)")
    topdir = tmp_path_factory.mktemp("rpmbuild")
    result = subprocess.run([str(REPO / "rpm" / "build-rpm.sh"), str(topdir)], capture_output=True, text=True,
                            env={**os.environ, "APF_RPM_PYTHON": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # rpm's dependency generator ran
    # building must leave the building python's own installation alone
    assert (Path(sys.executable).parent / "autopyfactory").exists()
    # EL9's bundles the HTCondor bindings (built for this machine's architecture), EL10's is noarch
    return {target: next((topdir / "RPMS").glob(f"*/autopyfactory-{__version__}-1.{target}.*.rpm"))
            for target in TARGETS}
