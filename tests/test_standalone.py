"""The repository stands alone: code and docs cite only files inside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# files of the team's workspace outside the repository (spelled in pieces so this file passes)
OUTSIDE = ("DESIGN" + ".md", "../" + "shared", "apf-" + "semantics")


def test_no_citation_of_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in tracked.split():
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".gz"):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {word}" for word in OUTSIDE if word in text]
    assert not found, "\n".join(found)
