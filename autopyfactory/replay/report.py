"""What ``apf replay`` shows: the table, the JSON of the contract, and the plots.

Plots need matplotlib (``pip install 'autopyfactory[plot]'``); nothing else does.
"""

from __future__ import annotations

import os

from autopyfactory.replay.model import Result

COLUMNS = [("policy", "policy", "{}"), ("jobs_done", "done", "{}"), ("payload_wait_mean", "wait mean s", "{:.0f}"),
           ("payload_wait_p50", "p50 s", "{:.0f}"), ("payload_wait_p95", "p95 s", "{:.0f}"),
           ("payload_wait_p99", "p99 s", "{:.0f}"), ("empty_pilot_fraction", "empty", "{:.1%}"),
           ("wasted_slot_fraction", "wasted slots", "{:.1%}"), ("pilots", "pilots", "{}"),
           ("submissions", "submitted", "{}"), ("peak_pending_pilots", "peak pending", "{}")]


def cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(metrics: list[dict], markdown: bool = False) -> str:
    """The results as an aligned text table, or a Markdown table."""
    rows = [[title for _, title, _ in COLUMNS]]
    rows += [[cell(m[key], fmt) for key, _, fmt in COLUMNS] for m in metrics]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)


def pareto(metrics: list[dict]) -> list[str]:
    """Policies not dominated on (p95 wait, empty fraction): none is at least as good on both and better on one."""
    def point(m):
        return (m["payload_wait_p95"] if m["payload_wait_p95"] is not None else float("inf"), m["empty_pilot_fraction"])
    front = []
    for m in metrics:
        a = point(m)
        if not any(point(o)[0] <= a[0] and point(o)[1] <= a[1] and point(o) != a for o in metrics):
            front.append(m["policy"])
    return front


def busiest_window(result: Result, span: float = 4 * 3600.0) -> tuple[float, float]:
    """(start, end) of ``span`` seconds around the moment the most work waited."""
    if not result.timeline:
        return 0.0, span
    peak = max(result.timeline, key=lambda row: row[1])[0]
    return max(0.0, peak - span / 4), max(0.0, peak - span / 4) + span


def plot(results: list[Result], directory: str, title: str) -> list[str]:
    """Write ``burst.svg`` (work waiting and pilots over time around the busiest moment, one panel
    per policy) and ``pareto.svg`` (p95 wait vs empty-pilot fraction). Returns the paths."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'autopyfactory[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    os.makedirs(directory, exist_ok=True)
    start, end = busiest_window(results[0])
    figure, axes = pyplot.subplots(len(results), 1, figsize=(8, 2.2 * len(results)), sharex=True, squeeze=False)
    for ax, result in zip(axes[:, 0], results, strict=True):
        rows = [row for row in result.timeline if start <= row[0] <= end]
        hours = [(row[0] - start) / 3600 for row in rows]
        ax.plot(hours, [row[1] for row in rows], label="work waiting (ready jobs)", color="tab:red")
        ax.plot(hours, [row[3] for row in rows], label="pilots pending", color="tab:orange")
        ax.plot(hours, [row[4] for row in rows], label="pilots running", color="tab:blue")
        ax.plot(hours, [row[2] for row in rows], label="pilots running a job", color="tab:green", linestyle=":")
        ax.set_title(result.policy, fontsize=9, loc="left")
        ax.set_ylabel("count")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel(f"hours from t = {start / 3600:.1f} h")
    figure.suptitle(f"{title}: the busiest moment", fontsize=10)
    figure.tight_layout()
    burst = os.path.join(directory, "burst.svg")
    figure.savefig(burst)
    pyplot.close(figure)

    metrics = [r.metrics() for r in results]
    front = pareto(metrics)
    figure, ax = pyplot.subplots(figsize=(6, 4))
    for m in metrics:
        if m["payload_wait_p95"] is None:
            continue
        ax.scatter(m["empty_pilot_fraction"], m["payload_wait_p95"], marker="o" if m["policy"] in front else "x")
        ax.annotate(m["policy"], (m["empty_pilot_fraction"], m["payload_wait_p95"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    points = sorted((m["empty_pilot_fraction"], m["payload_wait_p95"]) for m in metrics if m["policy"] in front)
    if len(points) > 1:
        ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="grey", linewidth=0.8)
    ax.set_xlabel("empty-pilot fraction (lower is better)")
    ax.set_ylabel("p95 payload wait, s (lower is better)")
    ax.set_title(f"{title}: o = Pareto front, x = dominated", fontsize=9)
    figure.tight_layout()
    front_path = os.path.join(directory, "pareto.svg")
    figure.savefig(front_path)
    pyplot.close(figure)
    return [burst, front_path]
