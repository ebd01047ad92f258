"""Alive-peer counting and the share of the work (pure functions)."""

from __future__ import annotations

from autopyfactory.peers import alive_peers, alive_window, peers_pending, share

NOW = 1_000_000.0


def test_a_peer_is_alive_while_it_submitted_within_the_window():
    peers = {
        "fresh": {"pending": 3, "running": 1, "submitted_last": NOW - 10},
        "edge": {"pending": 0, "running": 5, "submitted_last": NOW - 90},
        "gone": {"pending": 2, "running": 0, "submitted_last": NOW - 91},
        "never": {"pending": 0, "running": 4},
        "me": {"pending": 9, "running": 9, "submitted_last": NOW},
    }
    assert alive_peers(peers, "me", NOW, alive_window(3, 30.0)) == ["edge", "fresh"]
    assert alive_peers({}, "me", NOW, 90.0) == []


def test_peers_pending_counts_every_other_factory():
    peers = {"a": {"pending": 3}, "b": {"pending": 2, "submitted_last": 0}, "me": {"pending": 7}, "c": {}}
    assert peers_pending(peers, "me") == 5


def test_share_is_the_ceiling_of_need_over_alive_factories():
    assert share(10, 0) == 10
    assert share(10, 1) == 5
    assert share(11, 1) == 6
    assert share(1, 3) == 1
    assert share(0, 2) == 0
    assert share(-4, 1) == 0
