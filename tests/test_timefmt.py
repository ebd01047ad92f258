"""One way to write times and durations (autopyfactory/timefmt.py)."""

from autopyfactory.timefmt import duration, iso


def test_iso_is_utc_with_a_z():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1767323045.9) == "2026-01-02T03:04:05Z"
    assert iso(None) is None


def test_duration_picks_a_readable_unit():
    assert [duration(s) for s in (None, -5, 0, 45, 119, 120, 7199, 7200, 172799, 172800)] == [
        "-", "0 s", "0 s", "45 s", "119 s", "2 min", "120 min", "2.0 h", "48.0 h", "2.0 d"]
