"""The repository stands alone: code and docs cite only files inside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# files of the team's workspace outside the repository (spelled in pieces so this file passes)
OUTSIDE = ("DESIGN" + ".md", "../" + "shared", "apf-" + "semantics")
# the one exception: CI may point APF_PANDA_SCHEMA at the team's copy of the PanDA database schema
ALLOWED = {".ci/run": "../" + "shared/third_party/panda-database"}


def test_no_citation_of_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in tracked.split():
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".gz"):
            continue
        text = path.read_text(errors="replace")
        if name in ALLOWED:
            text = text.replace(ALLOWED[name], "")
        found += [f"{name}: {word}" for word in OUTSIDE if word in text]
    assert not found, "\n".join(found)


def test_ci_names_only_the_schema_outside_the_repository():
    # the exception above is used for the schema and nothing else
    text = (ROOT / ".ci/run").read_text()
    assert text.count("../" + "shared") == text.count(ALLOWED[".ci/run"]) >= 1
