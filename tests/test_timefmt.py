"""One way to write times and durations (autopyfactory/timefmt.py)."""

import pytest

from autopyfactory.timefmt import duration, iso, parse_until


def test_iso_is_utc_with_a_z():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1767323045.9) == "2026-01-02T03:04:05Z"
    assert iso(None) is None


def test_duration_picks_a_readable_unit():
    assert [duration(s) for s in (None, -5, 0, 45, 119, 120, 7199, 7200, 172799, 172800)] == [
        "-", "0 s", "0 s", "45 s", "119 s", "2 min", "120 min", "2.0 h", "48.0 h", "2.0 d"]


@pytest.mark.parametrize("value", [1e300, -1e300, float("inf"), float("nan"), 10**30, "soon", 2**63])
def test_iso_of_a_value_that_is_no_time_is_none_and_never_raises(value):
    assert iso(value) is None


def test_a_pause_ends_in_the_future_and_at_most_a_year_ahead():
    now = 1_700_000_000.0
    assert parse_until("+364d", now) == now + 364 * 86400
    for bad in ("+99999999999999999999d", "+366d", "9" * 400 + "s", "99999-01-01T00:00Z", "-1h", "2020-01-01"):
        with pytest.raises(ValueError):
            parse_until(bad, now)
