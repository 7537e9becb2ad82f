"""Turn a run's JSON lines into the README table and the PNG chart.

Every figure is the best over the run's rounds, per server and scenario (highest MB/s and
creates/s, lowest latency and RSS): the machine is noisy and the best round is the one
least disturbed. Ratios are taken within the same run only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
CHART = HERE / "results" / "latest.png"
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

LABELS = {
    "tusd-py": "tusd-py",
    "tusd-py-assets": "tusd-py (assets on)",
    "tus-node": "@tus/server",
    "tuspyserver": "tuspyserver",
    "litestar-tus": "litestar-tus",
}
REFERENCE = "tus-node"
HIGHER = ("mb_per_s", "creates_per_s", "kept_fraction")
LOWER = ("p50_ms", "p99_ms", "server_peak_rss_mib", "server_vmhwm_mib", "server_cpu_s", "client_cpu_s", "seconds")

Records = list[dict[str, Any]]
Best = dict[tuple[str, str], dict[str, Any]]


def load(path: Path) -> tuple[dict[str, Any], Records]:
    meta: dict[str, Any] = {}
    records: Records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "meta":
            meta = record
        else:
            records.append(record)
    return meta, records


def best_of(records: Records) -> tuple[Best, dict[tuple[str, str], list[str]], dict[tuple[str, str], int]]:
    """Per (server, scenario): the best value of every metric over the rounds that succeeded."""
    grouped: dict[tuple[str, str], Records] = defaultdict(list)
    errors: dict[tuple[str, str], list[str]] = defaultdict(list)
    for record in records:
        key = (record["server"], record["scenario"])
        if record.get("ok"):
            grouped[key].append(record)
        else:
            errors[key].append(str(record.get("error", "failed")))
    best: Best = {}
    for key, rows in grouped.items():
        merged: dict[str, Any] = {}
        for metric in {k for row in rows for k in row}:
            values = [row[metric] for row in rows if isinstance(row.get(metric), int | float)]
            if not values or isinstance(rows[0].get(metric), bool):
                continue
            if metric in HIGHER:
                merged[metric] = max(values)
            elif metric in LOWER:
                merged[metric] = min(values)
        merged["verified"] = all(row.get("verified", True) for row in rows)
        best[key] = merged
    counts = {key: len(rows) for key, rows in grouped.items()}
    return best, errors, counts


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}x"


def get(best: Best, server: str, scenario: str, metric: str) -> float | None:
    value = best.get((server, scenario), {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def servers_in(records: Iterable[dict[str, Any]]) -> list[str]:
    seen = {r["server"] for r in records if r["server"] != "limit"}
    return [name for name in LABELS if name in seen]


def markdown(path: Path) -> str:
    meta, records = load(path)
    best, errors, counts = best_of(records)
    names = servers_in(records)
    loopback = get(best, "limit", "loopback", "mb_per_s")
    disk = get(best, "limit", "disk", "mb_per_s")
    store = get(best, "limit", "store", "mb_per_s")
    rounds = max(counts.values(), default=0)
    lines = [
        f"Run `{path.name}`: commit {meta.get('commit')}"
        f"{' (tusd_py/ had uncommitted changes)' if meta.get('tree_dirty') else ''}, "
        f"{meta.get('cpus')} CPUs ({meta.get('cpu_model')}), Python {meta.get('python')}, node {meta.get('node')}, "
        f"load average {', '.join(f'{x:.1f}' for x in meta.get('loadavg_at_start', []))} at the start; "
        f"best of up to {rounds} rounds per cell; server and client pinned to separate cores: "
        f"{'yes' if meta.get('client_cpu') is not None else 'no'}.",
        "",
        f"Machine limits in the same run: one loopback TCP stream **{fmt(loopback)} MB/s**, "
        f"sequential disk write (4 MiB `os.write` + `fsync`) **{fmt(disk)} MB/s**, "
        f"one stream received and written to a new file by a blocking sink on the server's core "
        f"(`recv_into` a 4 MiB buffer, `pwrite`) **{fmt(store)} MB/s**.",
        "",
        "Each cell: the figure, then its ratio to @tus/server, then (for MB/s) its share of the loopback limit.",
        "",
        "| server | big, 64 MiB PATCHes | big, one PATCH | many: MB/s | many: p50 / p99 latency | small: creates/s "
        "| resume: bytes kept at the cut, verified |",
        "|---|---|---|---|---|---|---|",
    ]

    def throughput(server: str, scenario: str) -> str:
        value = get(best, server, scenario, "mb_per_s")
        if value is None:
            return "failed" if errors.get((server, scenario)) else "—"
        share = f" · {value / loopback:.0%}" if loopback else ""
        return f"{fmt(value)} MB/s · {ratio(value, get(best, REFERENCE, scenario, 'mb_per_s'))}{share}"

    for server in names:
        p50, p99 = get(best, server, "many", "p50_ms"), get(best, server, "many", "p99_ms")
        creates = get(best, server, "small", "creates_per_s")
        kept = get(best, server, "resume", "kept_fraction")
        resume_cell = "failed" if errors.get((server, "resume")) else "—"
        if kept is not None:
            resume_cell = f"{kept:.0%}, {'yes' if best[(server, 'resume')]['verified'] else 'NO'}"
        small_cell = "failed" if errors.get((server, "small")) else "—"
        if creates is not None:
            small_cell = f"{fmt(creates)} · {ratio(creates, get(best, REFERENCE, 'small', 'creates_per_s'))}"
        lines.append(
            f"| {LABELS[server]} | {throughput(server, 'big-chunked')} | {throughput(server, 'big-single')} "
            f"| {throughput(server, 'many')} | "
            + (
                f"{fmt(p50)} / {fmt(p99)} ms"
                if p99 is not None
                else ("failed" if errors.get((server, "many")) else "—")
            )
            + f" | {small_cell} | {resume_cell} |"
        )

    lines += [
        "",
        "Server peak RSS (MiB, the server's process tree polled every 50 ms; best round) and server CPU seconds:",
        "",
        "| server | big, 64 MiB PATCHes | big, one PATCH | many | small | resume |",
        "|---|---|---|---|---|---|",
    ]
    for server in names:
        cells = []
        for scenario in ("big-chunked", "big-single", "many", "small", "resume"):
            rss = get(best, server, scenario, "server_peak_rss_mib")
            cpu = get(best, server, scenario, "server_cpu_s")
            cells.append(f"{fmt(rss, 1)} MiB, {fmt(cpu, 1)} s CPU" if rss is not None else "—")
        lines.append(f"| {LABELS[server]} | " + " | ".join(cells) + " |")

    lines += ["", "Targets of issue 6, measured in this run:", "", "| target | measured | met |", "|---|---|---|"]

    def target(name: str, measured: float | None, goal: float, text: str, higher: bool = True) -> None:
        if measured is None:
            lines.append(f"| {name} | not measured | — |")
            return
        met = measured >= goal if higher else measured < goal
        lines.append(f"| {name} | {text} | {'yes' if met else 'no'} |")

    for scenario, label in (("big-chunked", "64 MiB PATCHes"), ("big-single", "one PATCH")):
        ours = get(best, "tusd-py", scenario, "mb_per_s")
        node = get(best, REFERENCE, scenario, "mb_per_s")
        tuspy = get(best, "tuspyserver", scenario, "mb_per_s")
        target(f"big ({label}) ≥ 2.5x @tus/server", ours / node if ours and node else None, 2.5, ratio(ours, node))
        target(f"big ({label}) ≥ 1.5x tuspyserver", ours / tuspy if ours and tuspy else None, 1.5, ratio(ours, tuspy))
        target(
            f"big ({label}) moonshot ≥ ½ loopback",
            ours / loopback if ours and loopback else None,
            0.5,
            f"{ours / loopback:.0%} of loopback" if ours and loopback else "—",
        )
    ours = get(best, "tusd-py", "many", "mb_per_s")
    node = get(best, REFERENCE, "many", "mb_per_s")
    target("many ≥ 2.5x @tus/server MB/s", ours / node if ours and node else None, 2.5, ratio(ours, node))
    our_p99 = get(best, "tusd-py", "many", "p99_ms")
    peer_p99 = [
        (get(best, peer, "many", "p99_ms"), peer)
        for peer in ("tus-node", "tuspyserver", "litestar-tus")
        if peer in names
    ]
    measured_peers = [(v, p) for v, p in peer_p99 if v is not None]
    lowest_peer = min(measured_peers, default=(None, ""))
    target(
        "many p99 lower than every peer",
        our_p99 if our_p99 is not None and measured_peers else None,
        lowest_peer[0] or 0,
        f"{fmt(our_p99)} ms vs {fmt(lowest_peer[0])} ms ({LABELS.get(lowest_peer[1], '')})",
        higher=False,
    )
    ours = get(best, "tusd-py", "small", "creates_per_s")
    node = get(best, REFERENCE, "small", "creates_per_s")
    target("small ≥ 1.5x @tus/server creates/s", ours / node if ours and node else None, 1.5, ratio(ours, node))
    ours = get(best, "tusd-py", "many", "server_peak_rss_mib")
    node = get(best, REFERENCE, "many", "server_peak_rss_mib")
    target(
        "peak RSS during many below @tus/server's",
        ours,
        node or 0,
        f"{fmt(ours, 1)} MiB vs {fmt(node, 1)} MiB",
        higher=False,
    )
    assets = get(best, "tusd-py-assets", "big-single", "mb_per_s")
    bare = get(best, "tusd-py", "big-single", "mb_per_s")
    target(
        "asset mode costs ≤ 10% on big (one PATCH)",
        assets / bare if assets and bare else None,
        0.9,
        f"{ratio(assets, bare)} of bare ({fmt(assets)} vs {fmt(bare)} MB/s)",
    )
    lines.append(
        "| a 1 GiB and a 10 GiB upload peak within 10 MiB | not in this harness: "
        "`python benchmarks/big_upload.py --size 10G --mode single` | — |"
    )
    if store:
        shares = [
            f"{label} {value / store:.0%}"
            for scenario, label in (("big-chunked", "64 MiB PATCHes"), ("big-single", "one PATCH"))
            if (value := get(best, "tusd-py", scenario, "mb_per_s"))
        ]
        lines += [
            "",
            "tusd-py's big figures as shares of the receive-and-store limit (what any server has to "
            f"do for `big`, with no HTTP and no tus): {', '.join(shares) or '—'}.",
        ]

    failed = sorted(key for key in errors if key not in best)
    partial = sorted(key for key in errors if key in best)
    if failed or partial:
        lines += ["", "Failures:", ""]
        for key in failed + partial:
            first = errors[key][0].replace("|", "\\|").replace("\n", " ")[:300]
            note = "every round" if key in failed else f"{len(errors[key])} round(s)"
            lines.append(f"- {LABELS.get(key[0], key[0])}, {key[1]} ({note}): {first}")
    return "\n".join(lines)


def write_readme(table: str) -> None:
    text = README.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        text = text.rstrip() + f"\n\n## Latest results\n\n{BEGIN}\n{END}\n"
        start, end = text.find(BEGIN), text.find(END)
    README.write_text(text[: start + len(BEGIN)] + "\n" + table + "\n" + text[end:])


def chart(path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, records = load(path)
    best, _, _ = best_of(records)
    names = servers_in(records)
    loopback = get(best, "limit", "loopback", "mb_per_s")
    disk = get(best, "limit", "disk", "mb_per_s")
    store = get(best, "limit", "store", "mb_per_s")
    panels = [
        ("big-chunked", "mb_per_s", "big: 1 GiB in 64 MiB PATCHes (MB/s)", True),
        ("big-single", "mb_per_s", "big: 1 GiB in one PATCH (MB/s)", True),
        ("many", "mb_per_s", "many: 200 x 4 MiB at once (MB/s)", True),
        ("many", "p99_ms", "many: p99 upload latency (ms, lower is better)", False),
        ("small", "creates_per_s", "small: POST + HEAD, 64 connections (creates/s)", False),
        ("many", "server_peak_rss_mib", "server peak RSS during many (MiB, lower is better)", False),
    ]
    colors = {
        "tusd-py": "#1f77b4",
        "tusd-py-assets": "#6baed6",
        "tus-node": "#2ca02c",
        "tuspyserver": "#ff7f0e",
        "litestar-tus": "#9467bd",
    }
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (scenario, metric, title, limits) in zip(axes.flat, panels, strict=True):
        shown = [n for n in names if get(best, n, scenario, metric) is not None]
        values = [get(best, n, scenario, metric) or 0.0 for n in shown]
        bars = ax.bar([LABELS[n] for n in shown], values, color=[colors[n] for n in shown])
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        if limits and loopback:
            ax.axhline(loopback, color="grey", linestyle="--", linewidth=1)
            ax.text(-0.4, loopback, f" loopback {loopback:,.0f}", va="bottom", fontsize=7, color="grey")
        if limits and disk:
            ax.axhline(disk, color="brown", linestyle=":", linewidth=1)
            ax.text(-0.4, disk, f" disk {disk:,.0f}", va="bottom", fontsize=7, color="brown")
        if limits and store:
            ax.axhline(store, color="purple", linestyle="-.", linewidth=1)
            ax.text(-0.4, store, f" receive + store {store:,.0f}", va="bottom", fontsize=7, color="purple")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(f"tusd-py and its peers, best of each run's rounds ({path.name}, commit {meta.get('commit')})")
    fig.tight_layout()
    png.parent.mkdir(exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def publish(path: Path, write: bool = True) -> None:
    table = markdown(path)
    print(table)
    if write:
        write_readme(table)
        chart(path, CHART)
        print(f"wrote the table into {README} and the chart to {CHART}")
