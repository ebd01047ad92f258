"""Slurm plugins without a cluster: squeue parsing, state table, failures, sbatch command line.

The real-cluster behaviour is in test_slurm_cluster.py; here the runner is
replaced so that failures (timeouts, garbage) can be produced on demand.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from autopyfactory.commands import CommandResult, run
from autopyfactory.plugins.batchstatus.slurm import (
    SLURM_STATES,
    SQUEUE_FIELDS,
    Slurm,
    parse_squeue,
    parse_tag,
    pilot_tag,
    task_ids,
)

FACTORY = "fac-A"


def line(jobid, array, task, state, comment, submit="2026-01-02T03:04:05", start="N/A", end="N/A",
         exitcode="0", reason="None") -> str:
    return "|".join([jobid, array, task, state, submit, start, end, exitcode, reason, comment]) + "|"


def plugin(factory: str = FACTORY, runner=None, wmsqueues: dict[str, str] | None = None,
           monitored: tuple[str, ...] = ()) -> Slurm:
    queues = {q: SimpleNamespace(wmsqueue=w, values={"monitorsection": ["apfmon"] if q in monitored else []})
              for q, w in (wmsqueues or {}).items()}
    context = SimpleNamespace(factory_id=factory, config=SimpleNamespace(queues=queues))
    p = Slurm({"squeue": "squeue", "slurmconf": "", "timeout": 5.0}, context)
    if runner is not None:
        p.runner = runner
    return p


def answer(stdout: str = "", returncode: int = 0, error: str | None = None, stderr: str = ""):
    def runner(argv, timeout, env=None, consume=None, **kw):
        runner.calls.append(list(argv))
        if consume is not None:  # as commands.run streams it: the lines, then the exit status
            value = consume(iter(stdout.splitlines()))
            return CommandResult(tuple(argv), returncode, "", stderr, 0.01, error, None if error else value)
        return CommandResult(tuple(argv), returncode, stdout, stderr, 0.01, error)

    runner.calls = []
    return runner


def test_tag_round_trip_with_awkward_names():
    tag = pilot_tag("fac:1|x", "WMS Q%", "q:1")
    assert "|" not in tag and tag.count(":") == 3
    assert parse_tag(tag) == ("fac:1|x", "WMS Q%", "q:1")
    assert parse_tag("somebody's comment") is None
    assert parse_tag("apf:too:many:colons:here") is None


@pytest.mark.parametrize("field, expected", [
    ("5", ["5"]), ("N/A", None), ("[0-3]", ["0", "1", "2", "3"]), ("0-2,7", ["0", "1", "2", "7"]),
    ("[4-9%2]", ["4", "5", "6", "7", "8", "9"]), ("0-6:3", ["0", "3", "6"]),
])
def test_task_ids(field, expected):
    assert task_ids(field) == expected


def test_state_table_covers_reference_mapping():
    reference = {
        "pending": ["PENDING", "CONFIGURING", "REQUEUED"],
        "running": ["RUNNING", "COMPLETING"],
        "done": ["COMPLETED"],
        "fault": ["FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"],
        "removed": ["CANCELLED", "REVOKED"],  # the factory never cancels a running pilot: someone else did
    }
    for state, codes in reference.items():
        for code in codes:
            assert SLURM_STATES[code] == state, code


def test_counts_per_queue_arrays_held_finished_and_peers():
    tag1 = pilot_tag(FACTORY, "W1", "q1")
    tag2 = pilot_tag(FACTORY, "W2", "q2")
    peer = pilot_tag("fac-B", "W1", "other")
    out = "\n".join([
        line("10", "10", "[3-9]", "PENDING", tag1),  # collapsed pending range: 7 pilots
        line("11", "10", "0", "RUNNING", tag1, start="2026-01-02T03:05:00", end="NONE"),
        line("12", "10", "1", "COMPLETED", tag1, start="2026-01-02T03:05:00", end="2026-01-02T03:06:00"),
        line("13", "10", "2", "FAILED", tag1, start="2026-01-02T03:05:00", end="2026-01-02T03:05:03",
             exitcode="768"),
        line("20", "20", "0", "PENDING", tag2, reason="JobHeldUser"),
        line("21", "20", "1", "CANCELLED by 0", tag2, start="2026-01-02T03:06:00", end="2026-01-02T03:06:00"),
        line("22", "20", "2", "CANCELLED", tag2, start="2026-01-02T03:05:00", end="2026-01-02T03:06:00"),
        # kill -9 on the node (wait status 9): ended from outside, not a failure of the pilot
        line("23", "20", "3", "FAILED", tag2, start="2026-01-02T03:05:00", end="2026-01-02T03:06:00", exitcode="9"),
        line("30", "30", "[0-4]", "PENDING", peer, submit="2026-01-02T04:00:00"),
        line("31", "30", "5", "RUNNING", peer, submit="2026-01-02T03:00:00"),
        line("40", "40", "N/A", "RUNNING", "a|user's comment with | pipes"),
        line("41", "41", "N/A", "PENDING", ""),
    ])
    now = time.mktime(time.strptime("2026-01-02T03:30:00", "%Y-%m-%dT%H:%M:%S"))
    info = plugin(wmsqueues={"q1": "W1", "q2": "W2"}).summarize(out, ["q1", "q2", "q3"], now)
    q1, q2, q3 = info["q1"], info["q2"], info["q3"]
    assert (q1.pending, q1.running, q1.done, q1.fault) == (7, 1, 1, 1)
    failed = [p for p in q1.finished if p.state == "fault"][0]
    assert failed.jobid == "10_2" and failed.exitcode == 3 and failed.runtime == 3
    assert (q2.pending, q2.held, q2.running, q2.done, q2.fault) == (1, 1, 0, 0, 0)
    assert {p.jobid: p.state for p in q2.finished} == {"20_1": "removed", "20_2": "removed", "20_3": "removed"}
    assert (q3.pending, q3.running, q3.done, q3.fault) == (0, 0, 0, 0)
    # start - submit of the pilots that started in the last hour, running or finished (Backlog reads them)
    assert sorted(q1.queue_waits) == [55, 55, 55] and sorted(q2.queue_waits) == [55, 55, 115]
    assert q3.queue_waits == ()
    # each with its start time, so that Backlog can take the waits of the last minutes only
    at5, at6 = (time.mktime(time.strptime(f"2026-01-02T03:0{m}:00", "%Y-%m-%dT%H:%M:%S")) for m in (5, 6))
    assert sorted(zip(q1.queue_wait_starts, q1.queue_waits, strict=True)) == [(at5, 55)] * 3
    assert sorted(zip(q2.queue_wait_starts, q2.queue_waits, strict=True)) == [(at5, 55), (at5, 55), (at6, 115)]
    assert q3.queue_wait_starts == ()
    # fac-B serves W1 too: a peer of q1, not of q2
    peer_b = q1.peers["fac-B"]
    assert (peer_b["pending"], peer_b["running"]) == (5, 1)
    assert peer_b["submitted_last"] == time.mktime(time.strptime("2026-01-02T04:00:00", "%Y-%m-%dT%H:%M:%S"))
    assert q2.peers == {}


def test_finished_pilots_are_remembered_for_an_hour_after_squeue_forgets_them():
    tag = pilot_tag(FACTORY, "W", "q")
    p = plugin()
    end = "2026-01-02T03:06:00"
    t_end = time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S"))
    first = p.summarize(line("1", "1", "0", "COMPLETED", tag, start="2026-01-02T03:05:00", end=end), ["q"],
                        t_end + 10)
    assert first["q"].done == 1
    assert p.summarize("", ["q"], t_end + 1000)["q"].done == 1  # gone from squeue, still within the hour
    assert p.summarize("", ["q"], t_end + 3700)["q"].done == 0


def test_other_factory_pilots_on_my_queue_name_are_not_mine():
    out = line("1", "1", "0", "RUNNING", pilot_tag("fac-B", "q", "q"))
    info = plugin().summarize(out, ["q"], time.time())["q"]
    assert info.running == 0 and info.peers["fac-B"]["running"] == 1


def test_failed_squeue_is_unknown_not_zero():
    for runner in (answer(returncode=1, error="exit code 1", stderr="slurm_load_jobs error: Unable to contact"),
                   answer(returncode=None, error="timed out after 5s")):
        with pytest.raises(RuntimeError, match="squeue"):
            plugin(runner=runner).poll(["q"])


def test_garbage_squeue_output_is_unknown():
    with pytest.raises(ValueError, match="fields"):
        plugin(runner=answer("this is not squeue output\n")).poll(["q"])


def test_missing_squeue_binary_is_unknown():
    p = plugin()
    p.options["squeue"] = "/nonexistent/squeue"
    with pytest.raises(RuntimeError, match="cannot run"):
        p.poll(["q"])


def test_one_squeue_call_serves_every_queue():
    runner = answer("")
    p = plugin(runner=runner)
    info = p.poll([f"q{i}" for i in range(50)])
    assert len(info) == 50 and len(runner.calls) == 1
    argv = runner.calls[0]
    assert argv[:5] == ["squeue", "-h", "-r", "-t", "all"] and argv[5] == "-O"
    assert argv[6].split(",")[-1] == "Comment:|" and len(argv[6].split(",")) == len(SQUEUE_FIELDS)


def test_200k_lines_parse_linearly():
    tags = [pilot_tag(FACTORY, f"W{i}", f"q{i}") for i in range(20)]
    rows = []
    for i in range(200_000):
        state = ("PENDING", "RUNNING", "COMPLETED", "FAILED")[i % 4]
        rows.append(line(str(1000 + i), str(1000 + i // 1000 * 1000), str(i % 1000), state, tags[i % 20],
                         start="2026-01-02T03:05:00", end="2026-01-02T03:06:00"))
    out = "\n".join(rows)
    started = time.process_time()
    info = plugin().summarize(out, [f"q{i}" for i in range(20)], time.time())
    elapsed = time.process_time() - started
    assert sum(i.pending for i in info.values()) == 50_000
    assert sum(i.running for i in info.values()) == 50_000
    # generous bound (CPU time, not wall clock): quadratic or backtracking parsing would take minutes
    assert elapsed < 30, elapsed
    assert len(list(parse_squeue(out[: len(out) // 2].rsplit("\n", 1)[0]))) > 90_000


def test_run_helper_never_raises():
    assert run(["/nonexistent/cmd"]).error.startswith("cannot run")
    slow = run(["sleep", "10"], timeout=0.5)
    assert slow.error.startswith("timed out") and slow.returncode is None
    bad = run(["sh", "-c", "echo oops >&2; exit 3"])
    assert bad.returncode == 3 and "oops" in bad.describe()


def test_completing_pilots_are_running_and_shown_as_exiting():
    tag = pilot_tag(FACTORY, "W1", "q1")
    peer = pilot_tag("fac-B", "W1", "other")
    out = "\n".join([
        line("50", "50", "0", "RUNNING", tag, start="2026-01-02T03:05:00", end="NONE"),
        line("51", "50", "1", "COMPLETING", tag, start="2026-01-02T03:05:00", end="2026-01-02T03:20:00"),
        line("52", "50", "2", "COMPLETING", tag, start="2026-01-02T03:05:00", end="2026-01-02T03:21:00"),
        line("60", "60", "N/A", "STAGE_OUT", tag, start="2026-01-02T03:05:00", end="2026-01-02T03:22:00"),
        line("61", "61", "N/A", "PENDING", tag),
        line("70", "70", "N/A", "COMPLETING", peer, start="2026-01-02T03:05:00", end="2026-01-02T03:22:00"),
    ])
    now = time.mktime(time.strptime("2026-01-02T03:30:00", "%Y-%m-%dT%H:%M:%S"))
    q1 = plugin(wmsqueues={"q1": "W1"}, monitored=("q1",)).summarize(out, ["q1", "q2"], now)["q1"]
    # running still counts them (they hold their nodes); exiting says how many are on their way out
    assert (q1.pending, q1.running, q1.exiting, q1.done, q1.fault) == (1, 4, 3, 0, 0)
    assert q1.to_dict()["exiting"] == 3
    assert q1.peers["fac-B"]["running"] == 1  # a peer's exiting pilot is not ours
    # each running pilot by its Slurm id, exiting ones apart (what APFMon is told); pending ones and peers not
    assert q1.active == {"50_0": "running", "50_1": "exiting", "50_2": "exiting", "60": "exiting"}
    assert "active" not in q1.to_dict()  # not in every cycle record
    # a queue without a monitor: the same counts, no ids kept (nothing reads them)
    unwatched = plugin(wmsqueues={"q1": "W1"}).summarize(out, ["q1", "q2"], now)["q1"]
    assert (unwatched.running, unwatched.exiting, unwatched.active) == (4, 3, {})


def test_no_exiting_pilots_is_zero():
    out = line("50", "50", "0", "RUNNING", pilot_tag(FACTORY, "W1", "q1"), start="2026-01-02T03:05:00")
    now = time.mktime(time.strptime("2026-01-02T03:30:00", "%Y-%m-%dT%H:%M:%S"))
    q1 = plugin(wmsqueues={"q1": "W1"}).summarize(out, ["q1"], now)["q1"]
    assert (q1.running, q1.exiting) == (1, 0)


def test_huge_task_ranges_are_counted_not_listed():
    """``[0-4000000000]`` once exhausted memory (a list of every task to count them)."""
    import tracemalloc

    from autopyfactory.info import check_batch

    mine, peer = pilot_tag(FACTORY, "W1", "q1"), pilot_tag("fac-B", "W1", "other")
    out = "\n".join([
        line("10", "10", "[0-3999999]", "PENDING", mine),  # Slurm's largest array: 4 million tasks
        line("20", "20", "[0-4000000000]", "PENDING", peer),
    ])
    tracemalloc.start()
    try:
        info = plugin(wmsqueues={"q1": "W1"}).summarize(out, ["q1"], time.time())["q1"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak:,} bytes to count the tasks"
    assert info.pending == 4_000_000 and info.peers["fac-B"]["pending"] == 4_000_000_001
    # more than any queue can have: the poller makes this answer unknown for q1 (status.py)
    assert "peers entry 'fac-B'" in check_batch(info)
    # a finished line naming millions of tasks is output we do not understand, never a list of them
    finished = line("30", "30", "[0-4000000000]", "COMPLETED", mine, start="2026-01-02T03:05:00",
                    end="2026-01-02T03:06:00")
    with pytest.raises(ValueError, match="array tasks on one line"):
        plugin().summarize(finished, ["q1"], time.time())


def test_a_pilot_that_found_no_work_is_empty_not_a_fault():
    """The wrapper exits EMPTY_EXIT (75) for a pilot that found no work: Slurm says FAILED, the factory empty."""
    tag = pilot_tag(FACTORY, "W1", "q1")
    ended = {"start": "2026-01-02T03:05:00", "end": "2026-01-02T03:05:30"}
    out = "\n".join([
        line("50", "50", "0", "FAILED", tag, exitcode=str(75 << 8), **ended),  # exit 75: empty
        line("50", "50", "1", "COMPLETED", tag, **ended),  # exit 0: done
        line("50", "50", "2", "FAILED", tag, exitcode=str(74 << 8), **ended),  # any other code: fault
    ])
    now = time.mktime(time.strptime("2026-01-02T03:30:00", "%Y-%m-%dT%H:%M:%S"))
    q1 = plugin(wmsqueues={"q1": "W1"}).summarize(out, ["q1"], now)["q1"]
    assert (q1.done, q1.fault, q1.empty) == (1, 1, 1)
    assert {p.jobid: p.state for p in q1.finished} == {"50_0": "empty", "50_1": "done", "50_2": "fault"}
