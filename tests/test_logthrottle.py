"""LogThrottle: one line per source and interval, the held-back ones counted on the next line."""

from autopyfactory.logthrottle import LogThrottle


def test_one_line_per_source_and_interval_with_the_count_held_back():
    throttle = LogThrottle(interval=60, max_sources=3)
    assert throttle.allow("a", 0) == (True, 0)
    assert [throttle.allow("a", t) for t in (1, 2, 59)] == [(False, 0)] * 3
    assert throttle.allow("b", 2) == (True, 0)  # another source is not held back
    assert throttle.allow("a", 60) == (True, 3)  # the next interval: said with the count
    assert throttle.allow("a", 61) == (False, 0)
    assert throttle.allow("a", 200) == (True, 1)


def test_memory_is_bounded_by_the_number_of_sources():
    throttle = LogThrottle(interval=60, max_sources=3)
    for n in range(1000):
        throttle.allow(f"10.0.0.{n}", 0)
    assert len(throttle._sources) == 3


def test_a_throttled_logger_lets_one_line_a_minute_through_with_the_count():
    import logging

    from autopyfactory.logthrottle import ThrottleFilter

    flt = ThrottleFilter(interval=3600)
    records = [logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (n,), None)
               for n in range(100)]
    assert [flt.filter(r) for r in records].count(True) == 1
