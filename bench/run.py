"""``make bench``: run the four benchmarks, print one table, keep it in docs/performance.md.

Each benchmark runs in its own process (``python -m bench.<name> --json FILE``);
the table lists what the factory took, what the baseline measured in the same
run took, their ratio and the target. The block between the markers in
docs/performance.md is replaced by the new table (the rest of the page, the
analysis, is left alone); ``--no-doc`` only prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, machine

BEGIN = "<!-- bench:begin (written by make bench) -->"
END = "<!-- bench:end -->"
BENCHMARKS = ("submit", "scale", "reaction")


def run_one(name: str, extra: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, "-m", f"bench.{name}", "--json", out.name, *extra]
        print(f"== {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        done = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"bench.{name} failed (exit {done.returncode})")
        return json.loads(Path(out.name).read_text())


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def rows(results: dict) -> list[tuple[str, str, str, str, str, str]]:
    out = []
    if "submit" in results:
        r = results["submit"]
        for key, what in (("one_queue", f"{r['pilots']} pilots, 1 queue, one cycle"),
                          ("many_queues", f"{r['pilots']} pilots, {r['queues']} queues x "
                                          f"{r['pilots'] // r['queues']}, one cycle")):
            s = r[key]
            samples = len(s["ratios"])
            out.append((f"1 submit: {what} (median of {samples})", f"{s['median_factory_seconds'] * 1000:.1f} ms",
                        f"{s['median_baseline_seconds'] * 1000:.1f} ms", f"{s['median_ratio']:.2f}",
                        f"<= {r['target_ratio']}", yes(s["median_ratio"] <= r["target_ratio"])))
    if "scale" in results:
        out += scale_rows(results["scale"])
    if "reaction" in results:
        r = results["reaction"]
        out.append((f"4 reaction: work in PanDA -> first pilot pending in Slurm ({r['queues']} arrivals; "
                    f"apfqueue.sleep {r['apfqueue_sleep']:g} s, status sleep {r['status_sleep']:g} s)",
                    f"median {r['median_seconds']:.1f} s, max {r['max_seconds']:.1f} s", "-", "-",
                    f"<= {r['target_seconds']:g} s", yes(r["max_seconds"] <= r["target_seconds"])))
    return out


def reference_size(sizes: list[dict]) -> dict:
    """The size the targets are set for: 2,000 queues (or the largest run below it, e.g. bench-quick's 500)."""
    below = [s for s in sizes if s["queues"] <= 2000]
    return max(below or sizes, key=lambda s: s["queues"])


def scale_rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    t = r["targets"]
    baselines = r.get("baselines") or {"-": r["baseline"]}
    out = []
    ref = reference_size(r["sizes"])
    for s in sorted(r["sizes"], key=lambda size: -size["queues"]):
        n = s["queues"]
        base = baselines.get(s.get("baseline", "-"), r["baseline"])
        label = f"{n} queues, {base.get('pilots', r['pilots']):,} pilots"
        if s is ref:
            out.append((f"2 cycle of every queue, steady state, {label} (CPU per status interval)",
                        f"{s['steady_cpu_per_interval']:.2f} s", f"{base['cpu']:.2f} s",
                        f"{s['cpu_ratio_steady']:.2f}", f"<= {t['steady_ratio']}",
                        yes(s["cpu_ratio_steady"] <= t["steady_ratio"])))
            out.append((f"2 first cycle of every queue from start, {label} (CPU)",
                        f"{s['first_cycle_cpu']:.2f} s", f"{base['cpu']:.2f} s",
                        f"{s['cpu_ratio_first_cycle']:.2f}", f"<= {t['first_cycle_ratio']}",
                        yes(s["cpu_ratio_first_cycle"] <= t["first_cycle_ratio"])))
            out.append((f"2 first cycle of every queue from start, {label} (wall)",
                        f"{s['first_cycle_wall']:.2f} s", f"{base['wall']:.2f} s",
                        f"{s['first_cycle_wall'] / base['wall']:.2f}", "-", "-"))
            out.append((f"2 peak RSS, {label} (baseline: the parse alone)", f"{s['peak_rss_mb']:.0f} MB",
                        f"{base['peak_rss_mb']:.0f} MB", f"{s['peak_rss_mb'] / base['peak_rss_mb']:.2f}",
                        f"<= {t['peak_rss_mb']} MB", yes(s["peak_rss_mb"] <= t["peak_rss_mb"])))
            calls = (f"{s['steady_http_per_interval']:g} / {s['steady_squeue_per_interval']:g}"
                     f" (start: {s['first_cycle_http']} / {s['first_cycle_squeue']})")
            ok = (s["steady_http_per_interval"] == s["steady_squeue_per_interval"] == t["calls_per_interval"]
                  and s["first_cycle_http"] == s["first_cycle_squeue"] == t["calls_per_interval"])
            out.append((f"2 HTTP requests / squeue calls per status interval, {label}", calls, "-", "-",
                        f"= {t['calls_per_interval']}", yes(ok)))
            usage = s["steady_rusage_per_interval"]
            out.append((f"2 per status interval, {label}: cycles / store transactions / SQL statements / "
                        "voluntary context switches / system CPU",
                        f"{s['steady_cycles_per_interval']:g} / {s.get('steady_store_transactions_per_interval', 0):g}"
                        f" / {s.get('steady_sql_statements_per_interval', 0):g} / {usage['vcsw']:g}"
                        f" / {usage['sys']:.2f} s", "-", "-", "-", "-"))
            out.append((f"2 threads, {label}", str(s["peak_threads"]), "-", "-", "-", "-"))
        else:
            out.append((f"3 {label}: steady CPU per interval / first cycle CPU / peak RSS",
                        f"{s['steady_cpu_per_interval']:.2f} s / {s['first_cycle_cpu']:.2f} s / "
                        f"{s['peak_rss_mb']:.0f} MB", f"{base['cpu']:.2f} s",
                        f"{s['cpu_ratio_steady']:.2f} / {s['cpu_ratio_first_cycle']:.2f}", "-", "-"))
    for key, g in r["growth"].items():
        out.append((f"3 growth {key} queues (steady CPU / first cycle CPU / first cycle wall)",
                    f"{g['steady_cpu']:.2f} / {g['first_cycle_cpu']:.2f} / {g['first_cycle_wall']:.2f}", "-",
                    "-", f"<= {g['queues']:g} (linear)",
                    yes(max(g["steady_cpu"], g["first_cycle_cpu"]) <= g["queues"])))
    return out


def table(results: dict, command: str) -> str:
    m = next((r["machine"] for r in results.values() if "machine" in r), None) or machine()
    commit = next((r["machine"].get("commit") for r in results.values() if r.get("machine", {}).get("commit")),
                  None) or m.get("commit", "?")
    lines = [
        f"Measured {m['date']} on commit {commit} with `{command}` on {m['nproc']} CPUs, {m['memory']}, "
        f"Python {m['python']}, {m['slurm']}, Linux {m['kernel']}.",
        "",
        "| benchmark | factory | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines) + "\n"


def update_doc(path: Path, text: str, results: dict) -> None:
    page = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in page or END not in page:
        page += f"\n{BEGIN}\n{END}\n"
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    raw = json.dumps(results, indent=1, sort_keys=True)
    block = (f"{BEGIN}\n{text}\n<details><summary>All figures (JSON)</summary>\n\n```json\n{raw}\n```\n\n"
             f"</details>\n{END}")
    path.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma list of: " + ", ".join(BENCHMARKS))
    p.add_argument("--no-doc", action="store_true", help="print the table only")
    p.add_argument("--doc", default=str(REPO / "docs" / "performance.md"))
    p.add_argument("--command", default="make bench", help="command named in the table")
    p.add_argument("--results", default=None, metavar="JSON",
                   help="do not run: render the table from results saved before (the JSON of the doc block)")
    p.add_argument("--quick", action="store_true",
                   help="make bench-quick: 500 queues for a few intervals; print each ratio against its target, "
                        "exit 1 when one is missed (the page is not written)")
    args = p.parse_args(argv)
    if args.quick:
        return quick()
    if args.results:
        results = json.loads(Path(args.results).read_text())
    else:
        results = {name: run_one(name, []) for name in args.only.split(",") if name}
    text = table(results, args.command)
    print(text)
    if not args.no_doc:
        update_doc(Path(args.doc), text, results)
        print(f"(table written to {args.doc})")
    return 0


def quick() -> int:
    """``make bench-quick``: the scale benchmark at 500 queues (about 90 s); 0 when every target is met."""
    results = {"scale": run_one("scale", ["--sizes", "500", "--interval", "10"])}
    rows_ = [row for row in rows(results) if row[5] in ("yes", "**no**")]
    width = max(len(row[0]) for row in rows_)
    for what, factory, baseline, ratio, target, met in rows_:
        shown = factory if baseline == "-" else f"{factory} vs {baseline}" + (f" = {ratio}" if ratio != "-" else "")
        print(f"{what:<{width}}  {shown:<28} target {target:<14} {'ok' if met == 'yes' else 'MISSED'}")
    missed = [row for row in rows_ if row[5] != "yes"]
    print("bench-quick:", "every target met" if not missed else f"{len(missed)} target(s) missed", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
