"""bench/provisioning.py's verdicts: an exception of recommended counts as the rule's only when it holds in most seeds."""

from __future__ import annotations

from bench.provisioning import SEEDS, exception_cells, exceptions


def row(policy, p95, empty, kind="own", seed=None, workload="w"):
    m = {"workload": workload, "slots": 100, "queue_delay": "fixed:60", "cycle": 60, "policy": policy,
         "limits": kind, "payload_wait_p95": p95, "empty_pilot_fraction": empty}
    if seed is not None:
        m.update(limits=f"{kind}-seed", seed=seed)
    return m


def test_an_exception_is_the_rules_only_when_most_seeds_agree():
    # seed 1: harvester 2 s better at the same empty fraction (dominates); seeds 2-5: recommended better
    rows = [row("apf-default", 200, 0.01), row("harvester", 198, 0.01), row("recommended", 200, 0.01)]
    rows += [row(p, v, 0.01, seed=s) for s in SEEDS for p, v in (("apf-default", 200), ("harvester", 203),
                                                                   ("recommended", 199))]
    # a second cell: a loss (more empty pilots at the same p95) in every seed
    rows += [row("apf-default", 300, 0.01, workload="v"), row("recommended", 300, 0.02, workload="v")]
    rows += [row(p, 300, e, seed=s, workload="v") for s in SEEDS for p, e in (("apf-default", 0.01),
                                                                                ("recommended", 0.03))]
    assert [(kind, cell[0], policies) for kind, cell, policies in exception_cells(rows)] == [
        ("own", "v", ["recommended", "apf-default"]), ("own", "w", ["recommended", "apf-default", "harvester"])]
    text = "\n".join(exceptions(rows))
    assert "| own | v | 100 | fixed:60 | 60 | loss | 300 / 300 | 2.00% / 1.00% | apf-default | 5 / 5 of 5 |" in text
    assert "| own | w | 100 | fixed:60 | 60 | tie | 200 / 200 | 1.00% / 1.00% | harvester | - / 1 of 5 |" in text
    assert "| own | 1 | 1 | 2 | 1 |" in text  # raw: 1 loss, 2 dominated; in most seeds: the loss and its domination
