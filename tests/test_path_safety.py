"""Queue names and wmsqueue values never become paths outside their base directory.

A queue section name or a wmsqueue is a directory name (pilot logs, .jdl files,
the Local WMS spool): only a safe character set is accepted, and every path
built from a config value is confined under its base directory (symlinks
included). baseLogDir may not be a system directory.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autopyfactory.context import FactoryContext
from autopyfactory.paths import PathEscape, confined
from autopyfactory.plugins.wmsstatus.local import Local
from autopyfactory.status import Unknown
from tests.conftest import local_queue


def check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autopyfactory.cli.apf", "check-config", "--conf", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("section", ["../../../escape", "/tmp/apf-abs", ".hidden", "a/b", "Q$ENV(HOME)",
                                     "Q WITH SPACE", "-rf", "x" * 129])
def test_unsafe_queue_name_is_refused_with_file_and_section(confdir, tmp_path, section):
    path = confdir.write(local_queue("GOOD", confdir.spool) + local_queue(section, confdir.spool, wmsqueue="W"))
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{confdir.root / 'queues.conf'}: [{section}] queue name not a safe name" in result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "escape").exists() and not os.path.exists("/tmp/apf-abs")


@pytest.mark.parametrize("wmsqueue", ["../../etc", "..", "/etc", "SITE/../../x", "SITE\\x", "."])
def test_unsafe_wmsqueue_is_refused_with_its_key(confdir, wmsqueue):
    path = confdir.write(local_queue("GOOD", confdir.spool, wmsqueue=wmsqueue))
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "[GOOD] wmsqueue: not a safe name (expected letters, digits" in result.stdout
    assert f"got {wmsqueue!r}" in result.stdout


def test_apf24_queue_names_pass(confdir):
    names = ["ANALY_BNL_SHORT-gridgk01", "BNL_ATLAS_1", "UKI-LT2-QMUL_SL6", "CERN-PROD_ce501.cern.ch", "_x"]
    path = confdir.write("".join(local_queue(n, confdir.spool, wmsqueue=n.split("-")[0]) for n in names))
    result = check_config(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("base", ["/", "/etc", "/etc/apf", "/var", "/var/log", "/usr", "/usr/share/apf", "/proc",
                                  "/sys", "/dev", "/boot", "/bin", "/root", "/tmp", "/home"])
def test_system_directory_as_baselogdir_is_refused(confdir, base):
    confdir.logs = base
    path = confdir.write(local_queue("Q", confdir.spool))
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "[Factory] baseLogDir: a system directory" in result.stdout


def test_symlink_to_a_system_directory_as_baselogdir_is_refused(confdir, tmp_path):
    (tmp_path / "looks-fine").symlink_to("/etc")
    confdir.logs = tmp_path / "looks-fine"
    path = confdir.write(local_queue("Q", confdir.spool))
    result = check_config(path)
    assert result.returncode == 2 and "a system directory (/etc)" in result.stdout


def test_confined_refuses_every_way_out(tmp_path):
    base = tmp_path / "base"
    (base / "day").mkdir(parents=True)
    (base / "day" / "link").symlink_to(tmp_path)
    assert confined(str(base), "day", "Q") == str(base / "day" / "Q")
    for parts in [("..",), ("day", "../../x"), ("/etc",), ("day", "link"), ("day", "link", "outside")]:
        with pytest.raises(PathEscape):
            confined(str(base), *parts)


def test_a_queue_log_directory_symlinked_out_of_baselogdir_is_refused(confdir, tmp_path):
    confdir.write(local_queue("Q", confdir.spool))
    config = confdir.load()
    context = FactoryContext(config)
    day = os.path.basename(os.path.dirname(context.logdir("Q")))
    os.rmdir(confdir.logs / day / "Q")
    outside = tmp_path / "outside"
    outside.mkdir()
    (confdir.logs / day / "Q").symlink_to(outside)
    with pytest.raises(PathEscape):
        context.logdir("Q")


def test_a_spool_directory_symlinked_out_is_unknown_not_read(confdir, tmp_path):
    confdir.write(local_queue("Q", confdir.spool) + local_queue("R", confdir.spool))
    config = confdir.load()
    context = FactoryContext(config)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("{}")
    confdir.spool.mkdir(exist_ok=True)
    (confdir.spool / "Q").symlink_to(outside)
    answer = Local({"spooldir": str(confdir.spool)}, context).poll(["Q", "R"])
    assert isinstance(answer["Q"], Unknown) and "leads out of" in str(answer["Q"])
    assert answer["R"].ready == 0
