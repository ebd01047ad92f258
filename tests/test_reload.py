"""Live reload: added queues start, removed stop, changed restart, unchanged keep running untouched."""

from __future__ import annotations

from autopyfactory.config import Problem
from tests.conftest import local_queue, wait_for


def queues(confdir, *names, **extra_by_queue) -> str:
    """Local queue sections; ``NAME={"key": "value"}`` sets (or overrides) keys of one queue."""
    text = ""
    for name in names:
        lines = local_queue(name, confdir.spool).splitlines()
        extra = extra_by_queue.get(name, {})
        lines = [line for line in lines if line.split("=")[0].strip() not in extra]
        text += "\n".join(lines) + "\n" + "".join(f"{k} = {v}\n" for k, v in extra.items()) + "\n"
    return text


def test_reload_added_removed_changed_unchanged(confdir, started_factory):
    confdir.write(queues(confdir, "KEEP", "GONE", "EDIT"))
    factory = started_factory(confdir)
    wait_for(lambda: all(q.cycles >= 2 for q in factory.queues.values()), what="two cycles of every queue")
    keep, gone, edit = (factory.queues[n] for n in ("KEEP", "GONE", "EDIT"))
    keep_left = keep._left
    keep.submitted_total = 7  # a counter that must survive the reload
    old_config = factory.config

    confdir.write(queues(confdir, "KEEP", "EDIT", "NEW", EDIT={"apfqueue.sleep": "0.4"}))
    problems = factory.reload()

    assert problems == []
    assert set(factory.queues) == {"KEEP", "EDIT", "NEW"}
    # unchanged: the very same object, never taken off the cycle workers, and its counters
    assert factory.queues["KEEP"] is keep
    assert keep._left is keep_left and not keep_left.is_set() and keep.alive and keep.restarts == 0
    assert keep.submitted_total == 7
    cycles_before = keep.cycles
    wait_for(lambda: keep.cycles > cycles_before, what="KEEP to go on cycling")
    # removed: its thread ended
    assert not gone.alive
    # changed: a new queue with the new keys
    assert factory.queues["EDIT"] is not edit and not edit.alive
    assert factory.queues["EDIT"].sleep == 0.4
    # added: running
    wait_for(lambda: factory.queues["NEW"].cycles >= 1, what="NEW's first cycle")
    # the factory and its context run from the new config
    assert factory.config is not old_config
    assert factory.context.config is factory.config
    assert factory.last_reload["ok"] is True
    assert factory.last_reload["added"] == ["NEW"]
    assert factory.last_reload["removed"] == ["GONE"]
    assert factory.last_reload["changed"] == ["EDIT"]
    assert factory.last_reload["unchanged"] == ["KEEP"]
    # the removed queue no longer holds a status poller interest
    for poller in factory.status.pollers.values():
        assert "GONE" not in poller.queues


def test_reload_with_a_broken_config_keeps_the_old_one(confdir, started_factory):
    confdir.write(queues(confdir, "A", "B"))
    factory = started_factory(confdir)
    wait_for(lambda: all(q.cycles >= 1 for q in factory.queues.values()), what="first cycles")
    before = dict(factory.queues)
    old_config = factory.config

    # one good new queue, and a file that cannot be parsed: nothing of it may apply
    confdir.write(queues(confdir, "A", "B", "C"))
    (confdir.root / "queues.conf").write_text("not ini at all\n" + (confdir.root / "queues.conf").read_text())
    problems = factory.reload()

    assert problems and all(isinstance(p, Problem) for p in problems)
    assert any("comes before any [section]" in str(p) for p in problems)
    assert factory.queues == before
    assert all(q.alive for q in factory.queues.values())
    assert factory.config is old_config and factory.context.config is old_config
    assert factory.last_reload["ok"] is False
    assert any("comes before any [section]" in p for p in factory.last_reload["problems"])

    # an unreadable factory.conf is rejected the same way
    (confdir.root / "factory.conf").write_text("[Factory\nbroken")
    assert factory.reload()
    assert factory.queues == before and factory.last_reload["ok"] is False


def test_reload_discovers_new_dropin_plugins(confdir, started_factory):
    confdir.write(queues(confdir, "A"))
    factory = started_factory(confdir)
    confdir.dropin("half.py", """
        from autopyfactory.interfaces import SchedulerPlugin

        class Half(SchedulerPlugin):
            '''Halve the number handed on.'''
            name = "Half"

            def calc(self, n, info):
                return n // 2, f"Half: {n} -> {n // 2}"
        """)
    confdir.write(queues(confdir, "A", "H", H={"schedplugin": "Ready, Half"}))
    assert factory.reload() == []
    queue = factory.queues["H"]
    assert [s.name for s in queue.schedulers] == ["Ready", "Half"]
    wait_for(lambda: queue.records and any(s.plugin == "Half" for s in queue.records[0].steps),
             what="a cycle through the drop-in")


def test_reload_keeps_an_operator_pause_on_a_changed_queue(confdir, started_factory):
    confdir.write(queues(confdir, "A"))
    factory = started_factory(confdir)
    factory.queues["A"].paused = True
    confdir.write(queues(confdir, "A", A={"apfqueue.sleep": "0.5"}))
    assert factory.reload() == []
    assert factory.queues["A"].paused is True


def test_reload_disabling_every_queue_stops_them_and_the_factory_keeps_waiting(confdir, started_factory):
    confdir.write(queues(confdir, "A"))
    factory = started_factory(confdir)
    thread = factory.queues["A"]
    confdir.write(queues(confdir, "A", A={"enabled": "False"}))
    assert factory.reload() == []
    assert factory.queues == {} and not thread.alive
    assert factory.last_reload["removed"] == ["A"]


def test_request_reload_is_carried_out_by_the_waiting_thread(confdir, started_factory):
    import threading

    confdir.write(queues(confdir, "A"))
    factory = started_factory(confdir)
    waiter = threading.Thread(target=factory.wait, daemon=True)
    waiter.start()
    confdir.write(queues(confdir, "A", "B"))
    factory.request_reload()
    wait_for(lambda: "B" in factory.queues, what="the requested reload")
    assert waiter.is_alive()  # the factory keeps running across the reload
    factory.request_dump()
    factory.request_stop()
    waiter.join(10)
    assert not waiter.is_alive()


def test_config_reconfig_interval_rereads_the_queue_files(confdir, started_factory):
    import threading

    confdir.write(queues(confdir, "A"), factory="config.reconfig.interval = 1\n")
    factory = started_factory(confdir)
    waiter = threading.Thread(target=factory.wait, daemon=True)
    waiter.start()
    keep = factory.queues["A"]
    confdir.write(queues(confdir, "A", "B"), factory="config.reconfig.interval = 1\n")
    wait_for(lambda: "B" in factory.queues, what="the periodic re-read to add B")
    assert factory.queues["A"] is keep
    factory.request_stop()
    waiter.join(10)
    assert factory.reload() and "stopping" in str(factory.reload()[0])


def test_reload_refuses_a_new_factory_id_with_the_reason(confdir, started_factory):
    """factoryId tags every pilot: changed live, the running pilots would stop counting and be submitted again."""
    confdir.write(queues(confdir, "Q1"))
    factory = started_factory(confdir)
    queue = factory.queues["Q1"]
    path = confdir.root / "factory.conf"
    path.write_text(path.read_text().replace("factoryId = test-factory", "factoryId = renamed"))
    problems = factory.reload()
    assert [(p.section, p.key) for p in problems] == [("Factory", "factoryId")]
    assert "changes only at a restart" in problems[0].message and "'renamed'" in problems[0].message
    assert factory.config.factory_id == "test-factory" and factory.queues["Q1"] is queue
    assert factory.last_reload["ok"] is False
