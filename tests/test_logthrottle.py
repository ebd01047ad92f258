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
