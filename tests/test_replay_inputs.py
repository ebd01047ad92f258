"""``apf replay`` refuses what would never end or exhaust memory, with a clear error (one test per attack)."""

from __future__ import annotations

import gzip
import subprocess
import tracemalloc

import pytest

from autopyfactory.replay import model as model_module
from autopyfactory.replay import traces
from autopyfactory.replay.model import Model, ModelError, Replay, replay
from autopyfactory.replay.policies import make_policy
from autopyfactory.replay.traces import Job, TraceError, read_trace
from tests.test_simulate import APF


def apf_replay(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([APF, "replay", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("record, error", [
    ("1 inf -1 30 1", "line 2: submit time 'inf' is not a finite number"),
    ("1 100 -1 nan 1", "line 2: run time 'nan' is not a finite number"),
    ("1 -inf -1 30 1", "line 2: submit time '-inf' is not a finite number"),
    ("1 100 -1 1e12 1", "line 2: run time 1e+12 s is above the limit 2.592e+06 s (30 days)"),
])
def test_a_time_that_is_not_finite_or_too_long_is_refused(tmp_path, record: str, error: str):
    trace = tmp_path / "t.swf"
    trace.write_text(f"1 0 -1 30 1\n{record}\n")
    with pytest.raises(TraceError) as caught:
        read_trace(str(trace))
    assert str(caught.value) == f"{trace}: {error}"


def test_a_submit_time_far_in_the_future_is_refused_not_run(tmp_path):
    """A 1e12 s submit time used to make the replay cycle for ever through 31,000 years of nothing."""
    trace = tmp_path / "t.csv"
    trace.write_text("submit,runtime\n0,30\n1e12,30\n")
    with pytest.raises(TraceError, match=r"t.csv: submissions span 11574074 days; a trace spans at most 400 days"):
        read_trace(str(trace))
    done = apf_replay("--trace", str(trace))
    assert done.returncode == 2 and "a trace spans at most 400 days" in done.stderr


def test_more_jobs_than_the_cap_stops_reading_at_the_cap(tmp_path):
    """The reader streams: it stops at the cap, before the garbage that follows (10^7 lines took 2.3 GB)."""
    trace = tmp_path / "t.csv"
    trace.write_text("".join(f"{i},10\n" for i in range(100)) + "not,a,record\n" * 10)
    with pytest.raises(TraceError, match=r"t.csv: line 51: more than 50 jobs \(the limit; --max-jobs raises it\)"):
        read_trace(str(trace), max_jobs=50)
    done = apf_replay("--trace", str(trace), "--max-jobs", "20")
    assert done.returncode == 2 and "line 21: more than 20 jobs" in done.stderr


def test_reading_keeps_the_jobs_not_the_text(tmp_path):
    """The reader streams: 50,000 records of 1 kB (50 MB of text) peak far below the text's size."""
    trace = tmp_path / "t.swf.gz"
    with gzip.open(trace, "wt", compresslevel=1) as handle:
        handle.writelines(f"{i} {i} -1 60 1 " + "-1 " * 330 + "\n" for i in range(50_000))
    tracemalloc.start()
    try:
        jobs = read_trace(str(trace))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(jobs) == 50_000
    assert peak < 15 * 2**20  # the jobs (about 150 bytes each) and a line at a time


def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path, monkeypatch):
    """A small .gz that inflates past MAX_BYTES ends in a TraceError, not in a MemoryError."""
    monkeypatch.setattr(traces, "MAX_BYTES", 2**20)
    bomb = tmp_path / "bomb.swf.gz"
    bomb.write_bytes(gzip.compress(b"1 0 -1 30 1 " + b" " * (20 * 2**20) + b"\n", 9))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(TraceError, match=r"bomb.swf.gz: line 1: longer than 65536 characters"):
        read_trace(str(bomb))
    bomb.write_bytes(gzip.compress(b"1 0 -1 30 1\n" * (2 * 2**20 // 12), 9))
    with pytest.raises(TraceError, match=r"bomb.swf.gz: more than 1 MiB of text \(uncompressed\)"):
        read_trace(str(bomb))


def test_a_gzip_bomb_of_blank_lines_stops_at_the_line_limit(tmp_path):
    """Blank lines hold no job; a bomb of them ends at two lines a job plus the spare, in seconds."""
    bomb = tmp_path / "blank.swf.gz"
    bomb.write_bytes(gzip.compress(b"1 0 -1 30 1\n" + b"\n" * 500_000, 9))
    with pytest.raises(TraceError, match=r"blank.swf.gz: more than 100,020 lines"):
        read_trace(str(bomb), max_jobs=10)


def test_a_real_size_gzip_bomb_through_the_command(tmp_path):
    """600 MiB of text in a 600 kB file: apf replay says so and exits 2."""
    bomb = tmp_path / "bomb.csv.gz"
    line = b"1,1" + b" " * 1000 + b"\n"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        block = line * 1024
        for _ in range(600 * 2**20 // len(block) + 1):
            handle.write(block)
    assert bomb.stat().st_size < 2 * 2**20
    done = apf_replay("--trace", str(bomb), timeout=300)
    assert done.returncode == 2, done.stderr
    assert "more than 512 MiB of text (uncompressed)" in done.stderr


def test_a_file_that_is_not_gzip_or_truncated(tmp_path):
    bad = tmp_path / "t.swf.gz"
    bad.write_bytes(b"1 0 -1 30 1\n")
    with pytest.raises(TraceError, match=r"t.swf.gz: not a readable gzip file"):
        read_trace(str(bad))
    bad.write_bytes(gzip.compress(b"1 0 -1 30 1\n" * 1000)[:-20])
    with pytest.raises(TraceError, match=r"t.swf.gz: not a readable gzip file"):
        read_trace(str(bad))


@pytest.mark.parametrize("option, value, error", [
    ("--cycle", "1e-9", "cycle: expected a number from 10 to 86,400 s, got 1e-09"),
    ("--status-interval", "1e-9", "status-interval: expected a number from 10 to 86,400 s, got 1e-09"),
    ("--pilot-retry", "1e-9", "pilot-retry: expected a number from 1 to 86,400 s, got 1e-09"),
    ("--cycle", "1e9", "cycle: expected a number from 10 to 86,400 s, got 1000000000.0"),
    ("--walltime", "1", "walltime: expected a number from 60 to 2,592,000 s, got 1.0"),
    ("--pilot-tries", "100000000", "pilot-tries: expected an integer from 1 to 1,000 tries, got 100000000"),
    ("--slots", "2000000", "slots: expected an integer from 1 to 1,000,000 cores, got 2000000"),
    ("--start-failure", "1", "start-failure: expected a number from 0 to 0.99 fraction, got 1.0"),
    ("--queue-delay", "fixed:inf", "queue delay: expected fixed:S, exp:MEAN or uniform:A:B with finite seconds"),
    ("--queue-delay", "exp:nan", "queue delay: expected fixed:S, exp:MEAN or uniform:A:B with finite seconds"),
    ("--queue-delay", "uniform:0:1e300", "queue delay: expected fixed:S, exp:MEAN or uniform:A:B"),
    ("--black-hole", "0:inf", "black-hole: expected START:LENGTH in finite seconds"),
    ("--status-phase", "60", "status-phase: expected seconds from 0 to below the status interval (60), got 60.0"),
    ("--job-cores", "many", "job-cores: expected one or trace, got 'many'"),
])
def test_options_out_of_bounds_are_refused(tmp_path, option: str, value: str, error: str):
    trace = tmp_path / "t.csv"
    trace.write_text("0,30\n")
    done = apf_replay("--trace", str(trace), option, value, timeout=60)
    assert done.returncode == 2
    assert f"apf replay: {error}" in done.stderr


def test_a_run_longer_than_the_cycle_limit_is_refused_before_it_starts(monkeypatch):
    monkeypatch.setattr(model_module, "MAX_CYCLES", 10_000)
    model = Model(cycle=10, status_interval=10)
    with pytest.raises(ModelError, match=r"the run would take 2.59e\+05 cycles or polls .* more than the limit 10,000"):
        Replay([Job(0, 10)], model, make_policy("apf-default", model))


def test_every_run_ends_even_when_no_pilot_ever_works():
    """Pilots that all fail (a black hole for the whole trace and after): the run ends with a result saying so."""
    jobs = [Job(i * 600.0, 100) for i in range(10)]
    model = Model(black_hole=f"0:{40 * 86400}", cycle=3600, status_interval=3600)
    result = replay(jobs, model, make_policy("apf-default", model))
    metrics = result.metrics()
    assert metrics["jobs_done"] == 0 and metrics["failed_pilots"] == metrics["pilots"] > 0
