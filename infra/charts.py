#!/usr/bin/env python3
"""Charts for docs/benchmarks.md, drawn from the benches' JSON results.

    charts.py coldstart     [--json .local/coldstart/results.json] [--out docs/charts/coldstart.png] [--note TEXT]
    charts.py hot-sweep     [--json .local/bench/hot_sweep.json]   [--out docs/charts/hot_sweep.png]
    charts.py renewal-scale [--json .local/bench/renewal_scale.json] [--out docs/charts/renewal_scale.png]

Run by the bench scripts at their end (infra/coldstart.sh, `infra/bench.sh
hot-sweep`, `infra/bench.sh renewal-scale`) with the project's .venv, where
infra/lib.sh's ensure_matplotlib installs matplotlib. Not part of CI.

The title of every chart says what was measured, where (this machine's CPU
count) and when (the JSON's own timestamp, else the file's modification
time, UTC). PNGs are about 1100 x 500 px.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE = (11, 5)  # inches at 100 dpi: 1100 x 500 px
DPI = 100

# One colour per kind of cold-start case.
KINDS = {
    "rust": ("#1f77b4", "Rust function (release, x86_64)"),
    "floor": ("#7f7f7f", "bare lambda_runtime binary (floor)"),
    "node": ("#d62728", "Node 20 + SDK v3 (npm install)"),
    "node-bundled": ("#ff9896", "Node 20 + SDK v3 (esbuild bundle)"),
}


def machine() -> str:
    return f"{os.cpu_count()} vCPU shared"


def when(data: dict, path: Path) -> str:
    stamp = data.get("measured_at") if isinstance(data, dict) else None
    if stamp:
        return str(stamp)
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return mtime.strftime("%Y-%m-%d %H:%M UTC")


def save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    print(f"chart: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def log2_axis(ax, values: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def kind_of(name: str) -> str:
    if name == "rust-bare-hello":
        return "floor"
    if name == "node20-getitem-bundled":
        return "node-bundled"
    if name.startswith("node"):
        return "node"
    return "rust"


def coldstart(args) -> None:
    data = json.loads(args.json.read_text())
    summaries = {k: v for k, v in data["summaries"].items() if "median_ms" in v}
    if not summaries:
        sys.exit("no measured case in " + str(args.json))
    # Rust functions first (in run order), then the floor, then Node.
    order = {"rust": 0, "floor": 1, "node-bundled": 2, "node": 3}
    names = sorted(summaries, key=lambda n: order[kind_of(n)])
    colours = [KINDS[kind_of(n)][0] for n in names]
    runs = max(s.get("runs", 0) for s in summaries.values())
    # Side by side for a few cases; stacked and wider for every function.
    many = len(names) > 8
    if many:
        fig, (left, right) = plt.subplots(2, 1, figsize=(max(11, 0.4 * len(names)), 10),
                                          layout="constrained")
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=SIZE, layout="constrained")
    x = range(len(names))

    median = [summaries[n]["median_ms"] for n in names]
    p90 = [summaries[n]["p90_ms"] for n in names]
    left.bar(x, median, color=colours, yerr=[[0] * len(names), [p - m for p, m in zip(p90, median)]],
             capsize=4, ecolor="black", error_kw={"elinewidth": 1})
    left.set_yscale("log")
    left.set_ylabel("process start → first answer, ms (log scale)")
    left.set_title("Median time to first answer (whisker: p90)")
    # Median above its whisker.
    for i, (m, top) in enumerate(zip(median, p90)):
        left.annotate(f"{m:.0f}" if m >= 10 else f"{m:.1f}", (i, top), ha="center", va="bottom",
                      xytext=(0, 2), textcoords="offset points", fontsize=8)

    rss = [summaries[n]["rss_median_mb"] for n in names]
    rss_max = [summaries[n]["rss_max_mb"] for n in names]
    right.bar(x, rss, color=colours, yerr=[[0] * len(names), [b - a for a, b in zip(rss, rss_max)]],
              capsize=4, ecolor="black", error_kw={"elinewidth": 1})
    right.set_ylabel("peak RSS (VmHWM), MB")
    right.set_title("Median peak RSS (whisker: max)")
    for i, (m, top) in enumerate(zip(rss, rss_max)):
        right.annotate(f"{m:.1f}", (i, top), ha="center", va="bottom", xytext=(0, 2),
                       textcoords="offset points", fontsize=8)

    for ax in (left, right):
        ax.set_xticks(list(x), names, rotation=45 if many else 30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3, which="both")
    shown = []
    for n in names:
        if kind_of(n) not in shown:
            shown.append(kind_of(n))
    handles = [plt.Rectangle((0, 0), 1, 1, color=KINDS[k][0]) for k in shown]
    right.legend(handles, [KINDS[k][1] for k in shown], fontsize=8, loc="upper left")
    right.set_ylim(top=max(rss_max) * 1.1)
    note = f"; {args.note}" if args.note else ""
    fig.suptitle(f"Cold start proxy: local Runtime API, {runs} runs per case, 128 MB env — "
                 f"{machine()}, {when(data, args.json)}{note}", fontsize=10)
    save(fig, args.out)


def hot_sweep(args) -> None:
    data = json.loads(args.json.read_text())
    rows = sorted(data["rows"], key=lambda r: r["writers"])
    if not rows:
        sys.exit("no rows in " + str(args.json))
    writers = [r["writers"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE, layout="constrained")
    for key, label, style in (("p50_ms", "p50", "o-"), ("p90_ms", "p90", "s-"),
                              ("p99_ms", "p99", "^-"), ("max_ms", "max", "x:")):
        left.plot(writers, [r[key] for r in rows], style, label=label)
    left.axhline(1000, color="grey", linestyle="--", linewidth=1)
    left.annotate("p99 target 1 s", (writers[0], 1000), xytext=(2, 3), textcoords="offset points",
                  fontsize=8, color="grey")
    left.set_yscale("log")
    log2_axis(left, writers)
    left.set_xlabel("concurrent writers on one account (log2)")
    left.set_ylabel("latency of one balance change, ms (log scale)")
    left.set_title("Latency percentiles")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)

    right.bar(range(len(rows)), [r["changes_per_s"] for r in rows], color="#1f77b4", alpha=0.8,
              label="changes/s")
    right.set_xticks(range(len(rows)), [str(w) for w in writers])
    right.set_xlabel("concurrent writers on one account")
    right.set_ylabel("throughput, changes/s", color="#1f77b4")
    right.set_title("Throughput, DynamoDB calls per change, 503s")
    right.set_ylim(top=max(r["changes_per_s"] for r in rows) * 1.12)
    for i, r in enumerate(rows):
        right.annotate(f"503×{r['errors_503']}", (i, r["changes_per_s"]), ha="center", va="bottom",
                       xytext=(0, 2), textcoords="offset points", fontsize=8,
                       color="#d62728" if r["errors_503"] else "black")
    calls = right.twinx()
    calls.plot(range(len(rows)), [r["calls_per_change"] for r in rows], "o-", color="#ff7f0e",
               label="DynamoDB calls/change")
    calls.set_ylabel("DynamoDB calls per change", color="#ff7f0e")
    calls.set_ylim(bottom=0)
    right.grid(axis="y", alpha=0.3)
    busy = data.get("busy_threads", 0)
    fig.suptitle(f"One hot account, {data.get('changes', '?')} credits per writer count, backoff: "
                 f"{data.get('policy', '?')}{f', {busy} busy threads' if busy else ''}\n"
                 f"DynamoDB Local, {machine()}, {when(data, args.json)}", fontsize=10)
    save(fig, args.out)


def renewal_scale(args) -> None:
    data = json.loads(args.json.read_text())
    rows = data["rows"]
    if not rows:
        sys.exit("no rows in " + str(args.json))
    # Several rounds with the same N (e.g. 1,8,1,8): each its own point.
    ns = sorted({r["workers"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE, layout="constrained")
    left.plot([r["workers"] for r in rows], [r["wall_s"] for r in rows], "o", color="#1f77b4",
              label="measured")
    first = [r for r in rows if r["workers"] == ns[0]]
    if first:
        base = first[0]["wall_s"] * first[0]["workers"]
        left.plot(ns, [base / n for n in ns], "--", color="grey", label=f"ideal: wall(N={ns[0]}) × {ns[0]}/N")
    by_n = {n: [r["wall_s"] for r in rows if r["workers"] == n] for n in ns}
    left.plot(ns, [sum(v) / len(v) for v in by_n.values()], "-", color="#1f77b4", alpha=0.6)
    log2_axis(left, ns)
    left.set_ylim(bottom=0)
    left.set_xlabel("workers N (log2)")
    left.set_ylabel("wall time of one round, s")
    left.set_title(f"Wall time for {data.get('subs', '?')} due subscriptions")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    right.plot([r["workers"] for r in rows], [r["renewals_per_s"] for r in rows], "o", color="#2ca02c")
    by_n = {n: [r["renewals_per_s"] for r in rows if r["workers"] == n] for n in ns}
    right.plot(ns, [sum(v) / len(v) for v in by_n.values()], "-", color="#2ca02c", alpha=0.6)
    for r in rows:
        right.annotate("exact" if r.get("exact") else "NOT exact", (r["workers"], r["renewals_per_s"]),
                       xytext=(4, 4), textcoords="offset points", fontsize=7,
                       color="black" if r.get("exact") else "#d62728")
    log2_axis(right, ns)
    right.margins(x=0.1)
    right.set_ylim(bottom=0, top=max(r["renewals_per_s"] for r in rows) * 1.1)
    right.set_xlabel("workers N (log2)")
    right.set_ylabel("renewals per second")
    right.set_title("Renewals per second (label: exactly-once check)")
    right.grid(alpha=0.3)
    warm = data.get("warmup_rounds", 0)
    warm = f", after {warm} untimed warm-up round{'s' if warm > 1 else ''}" if warm else ""
    fig.suptitle(f"Renewal fan-out: {data.get('partitions', 17)} partition messages, N workers, one "
                 f"DynamoDB Local{warm} — {machine()}, {when(data, args.json)}", fontsize=10)
    save(fig, args.out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="chart", required=True)
    for name, default_json, fn in (
        ("coldstart", ".local/coldstart/results.json", coldstart),
        ("hot-sweep", ".local/bench/hot_sweep.json", hot_sweep),
        ("renewal-scale", ".local/bench/renewal_scale.json", renewal_scale),
    ):
        p = sub.add_parser(name)
        p.add_argument("--json", type=Path, default=ROOT / default_json)
        p.add_argument("--out", type=Path, default=ROOT / "docs" / "charts" / f"{name.replace('-', '_')}.png")
        p.add_argument("--note", default="", help="appended to the title (e.g. the load average)")
        p.set_defaults(fn=fn)
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
