"""From measurements to verdicts, one table, a JSON file and an optional chart.

A *verdict* annotates one row: the ratio syftzmq/that row (medians, so below 1 means syftzmq is
faster for times) and, where the spec sets one, the target and PASS/MISS. Every target is
written as a ratio limit here, in one list, next to the words of the spec it encodes; a target
on an absolute quantity (a start time, a fleet's memory) is a ratio to that quantity.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from _bench_common import (HOP_GROWTH, IDLE_FLEET_TARGET_BYTES, LEAN, LEAN_INTERLEAVED, LOCAL, MEMCPY,
                           MEMORY_IDLE, RAW_ZMQ, RAY, RAY_ZERO_COPY, ROUND_TRIP,
                           START_TARGET_S, SYFT, SYFT_DERIVED, SYFT_PLAN, SYFT_SEND, SYSTEMS,
                           TORCH, WORKER_START, Config, Measurement, MiB, Results, bulk_name,
                           chain_name, cpu_count, fedavg_name, idle_pss_name, memory_stored_name,
                           move_name, overhead_name, part6_name, pipelined_name, size_name,
                           traffic_name)

KiB = 1024


@dataclass
class Verdict:
    """The ratio shown on row (case, name, system), and its target if it has one."""

    case: int
    name: str
    system: str
    ratio: float
    limit: float | None = None   # PASS when ratio <= limit (or < limit if strict)
    target: str = ""
    strict: bool = False

    @property
    def result(self) -> str:
        if self.limit is None:
            return ""
        ok = self.ratio < self.limit if self.strict else self.ratio <= self.limit
        return "PASS" if ok else "MISS"


# ---------------------------------------------------------------------------------------- verdicts
def judge(results: Results, config: Config) -> list[Verdict]:
    """A ratio for every peer row, plus the targets on absolute quantities (call derive first)."""
    targets = _targets(config)
    verdicts = []
    for row in results.measurements:
        if row.system in (SYFT, SYFT_DERIVED, SYFT_PLAN) or row.unit != "s":
            continue
        mine = results.find(row.case, row.name, SYFT)
        if mine is None or row.median <= 0:
            continue
        limit, text = targets.get((row.case, row.name, row.system), (None, ""))
        verdicts.append(Verdict(row.case, row.name, row.system, mine.median / row.median,
                                limit, text))
    verdicts += _absolute_verdicts(results, config)
    verdicts += _plan_verdicts(results)
    return verdicts


def _plan_verdicts(results: Results) -> list[Verdict]:
    """Case 6's target (<=1.2x one process with 2 workers) is judged on the Plan row: its
    median over the local sequential median (the pointer-op row's ratio, shown on the local row,
    has its own target, see :func:`_targets`)."""
    verdicts = []
    for row in results.measurements:
        local = results.find(row.case, row.name, LOCAL)
        if row.system != SYFT_PLAN or local is None or local.median <= 0:
            continue
        limit, text = (1.2, "<=1.2x one process") if row.name == fedavg_name(2) else (None, "")
        verdicts.append(Verdict(row.case, row.name, SYFT_PLAN, row.median / local.median,
                                limit, text))
    return verdicts


def _targets(config: Config) -> dict[tuple[int, str, str], tuple[float, str]]:
    """The targets as limits on syftzmq-time / peer-time (bulk sizes: the largest run).

    Case 1's old limit against raw pyzmq is replaced by the lean-Python floor, which does the
    same job as syftzmq, judged on the floor measured interleaved with syftzmq (its own phase's
    row stays beside it, unjudged); the move-vs-send limit of case 4 stays (nothing passing may
    get worse).
    """
    ops, big = config.pipelined_ops, max(config.bulk_mib)
    targets = {
        (1, ROUND_TRIP, LEAN_INTERLEAVED): (1.25, "<=1.25x lean floor"),
        (1, ROUND_TRIP, TORCH): (1 / 3, "<=0.33x (3x faster)"),
        (2, pipelined_name(ops), RAW_ZMQ): (1 / 0.6, "<=1.67x (60% of the rate)"),
        (4, move_name(config.move_mib), SYFT_SEND): (1.2, "<=1.2x one-way send"),
        (4, move_name(config.move_mib), RAY_ZERO_COPY): (1.0, "<=1x (no slower)"),
        (6, fedavg_name(2), LOCAL): (3.0, "<=3x one process (pointer ops)"),
        (8, part6_name(config.part6_images), LOCAL): (1.3, "<=1.3x local"),
    }
    for direction in ("send", "get"):
        name = bulk_name(direction, big)
        targets[(3, name, MEMCPY)] = (3.0, "<=3x memcpy (touched)")
        targets[(3, name, TORCH)] = (0.5, "<=0.5x (2x throughput)")
    return targets


def derive(results: Results, config: Config) -> None:
    """Rows computed from other rows: chain growth per hop (least squares over the medians);
    and how far the lean floor itself is from case 1's torch.rpc target."""
    _floor_against_rpc(results)
    depths = [(d, results.find(5, chain_name(d), SYFT)) for d in config.chain_depths]
    points = [(d, m.median) for d, m in depths if m is not None]
    if len(points) >= 2:
        results.add(Measurement(5, HOP_GROWTH, SYFT_DERIVED, [_slope(points)],
                                note="least-squares slope of the medians over depth"))


def _floor_against_rpc(results: Results) -> None:
    """Case 1's rpc target (syftzmq at most a third of torch.rpc's time) next to what the lean
    floor itself reaches in the same run: where the floor is above a third, the target asks
    syftzmq to be faster than the least honest Python code doing the same job."""
    floor = results.find(1, ROUND_TRIP, LEAN_INTERLEAVED) or results.find(1, ROUND_TRIP, LEAN)
    rpc = results.find(1, ROUND_TRIP, TORCH)
    if floor is None or rpc is None or rpc.median <= 0:
        return
    results.notice(1, floor.system, f"the lean floor's own round trip is "
                                    f"{format_ratio(floor.median / rpc.median)} torch.rpc's "
                                    f"(the target for syftzmq: <=0.33x)")


def _slope(points: Sequence[tuple[float, float]]) -> float:
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _absolute_verdicts(results: Results, config: Config) -> list[Verdict]:
    """Targets measured against a quantity rather than a peer: bytes, per-hop growth, memory."""
    verdicts = []
    moved = config.move_mib * MiB
    client_bytes = results.find(4, traffic_name(config.move_mib), SYFT)
    if client_bytes is not None:
        verdicts.append(Verdict(4, client_bytes.name, SYFT, max(client_bytes.samples) / moved,
                                0.01, f"no payload (<1% of {size_name(moved)})"))
    growth = results.find(5, HOP_GROWTH, SYFT_DERIVED)
    single = results.find(5, chain_name(1), SYFT)
    if growth is not None and single is not None:
        verdicts.append(Verdict(5, growth.name, SYFT_DERIVED, growth.median / single.median, 1.2,
                                "<=1.2x depth-1 time"))
    idle = results.find(7, MEMORY_IDLE, SYFT)
    big = config.memory_big_mib * MiB
    stored = results.find(7, memory_stored_name(big, config.memory_big_tensors), SYFT)
    if idle is not None and stored is not None:
        verdicts.append(Verdict(7, stored.name, SYFT, stored.median / (big + idle.median), 1.1,
                                "<=1.1x (stored + idle)"))
    overhead = results.find(7, overhead_name(config.memory_small_tensors), SYFT)
    if overhead is not None:
        verdicts.append(Verdict(7, overhead.name, SYFT, overhead.median / KiB, 1.0,
                                "< 1 KiB", strict=True))
    start = results.find(9, WORKER_START, SYFT)
    if start is not None:
        verdicts.append(Verdict(9, start.name, SYFT, start.median / START_TARGET_S, 1.0,
                                f"<={START_TARGET_S:g} s (ratio to it)"))
    fleet = config.idle_workers_target
    total = (results.find(10, idle_pss_name(fleet), SYFT)
             or results.find(10, idle_pss_name(fleet, extrapolated=True), SYFT))
    if total is not None:
        verdicts.append(Verdict(10, total.name, SYFT, total.median / IDLE_FLEET_TARGET_BYTES, 1.0,
                                f"<={format_bytes(IDLE_FLEET_TARGET_BYTES)} (ratio to it)"))
    return verdicts


# ------------------------------------------------------------------------------------ formatting
def _scaled(value: float, units: Sequence[tuple[str, float]]) -> str:
    """Three significant digits in the largest unit that keeps the number >= 1 once rounded."""
    unit, scale = units[-1]
    for unit, scale in units:
        if abs(value) >= scale * 0.9995:  # 999.7 us shows as 1 ms, not as 1e+03 us
            break
    return f"{value / scale:.3g} {unit}"


def format_time(seconds: float) -> str:
    return _scaled(seconds, (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)))


def format_bytes(value: float) -> str:
    return _scaled(value, (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB), ("B", 1)))


def format_ratio(ratio: float) -> str:
    return f"{ratio:.1e}x" if ratio < 0.01 else f"{ratio:.3g}x"


def format_value(row: Measurement, value: float) -> str:
    return format_time(value) if row.unit == "s" else format_bytes(value)


def format_rate(row: Measurement) -> str:
    rate = row.rate
    if rate is None:
        return ""
    if row.work_unit == "B":
        return f"{rate / 1e9:.3g} GB/s"
    return f"{rate / 1e3:.3g}k {row.work_unit}/s"


HEADER = ("case", "measurement", "system", "median", "p90", "rate", "syftzmq/peer", "target",
          "result")


def ordered(measurements: Sequence[Measurement]) -> list[Measurement]:
    """By case, then by measurement in the order first measured, then syftzmq before its peers."""
    first_seen: dict[tuple[int, str], int] = {}
    for index, row in enumerate(measurements):
        first_seen.setdefault((row.case, row.name), index)
    rank = {system: position for position, system in enumerate(SYSTEMS)}
    return sorted(measurements, key=lambda m: (m.case, first_seen[(m.case, m.name)],
                                               rank.get(m.system, len(rank))))


def table_rows(results: Results, verdicts: Iterable[Verdict]) -> list[tuple[str, ...]]:
    by_row = {(v.case, v.name, v.system): v for v in verdicts}
    rows = []
    for row in ordered(results.measurements):
        verdict = by_row.get((row.case, row.name, row.system))
        rows.append((str(row.case), row.name, row.system, format_value(row, row.median),
                     format_value(row, row.p90) if len(row.samples) > 1 else "",
                     format_rate(row), format_ratio(verdict.ratio) if verdict else "",
                     verdict.target if verdict else "", verdict.result if verdict else ""))
    return rows


def render_table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    right = {3, 4, 5, 6}  # numbers

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out, previous_case = [line(HEADER), line(tuple("-" * w for w in widths))], None
    for cells in rows:
        if previous_case is not None and cells[0] != previous_case:
            out.append("")
        out.append(line(cells if cells[0] != previous_case else ("", *cells[1:])))
        previous_case = cells[0]
    return "\n".join(out)


def render_notes(results: Results) -> str:
    """How each row was measured, and what could not run."""
    lines = ["how rows were measured:"]
    seen = set()
    for row in ordered(results.measurements):
        key = (row.case, row.system, row.note)
        if row.note and key not in seen:
            seen.add(key)
            lines.append(f"  case {row.case} {row.system}: {row.note}")
    if results.notices:
        lines.append("not run / reported:")
        lines += [f"  case {n.case} {n.system}: {n.text}" for n in results.notices]
    return "\n".join(lines)


def describe_sizes(config: Config) -> str:
    """What was run, so a reader can tell a quick table from a full one."""
    return (f"reps: {config.reps_small} small, {config.reps_pipelined} pipelined, "
            f"{config.reps_bulk} bulk, {config.fedavg_reps} FedAvg (after 1 warm-up each); "
            f"bulk {'/'.join(map(str, config.bulk_mib))} MiB (targets on the largest); "
            f"move {config.move_mib} MiB; chains to depth {max(config.chain_depths)}; "
            f"FedAvg {'/'.join(map(str, config.fedavg_workers))} workers; "
            f"memory {size_name(config.memory_big_mib * MiB)} and "
            f"{config.memory_small_tensors} small tensors; Part 6 on {config.part6_images} "
            f"images x {config.part6_reps}; {config.start_workers} workers started "
            f"(fleet target: {config.idle_workers_target})")


def unjudged(results: Results, config: Config) -> list[str]:
    """Peer targets that could not be judged because a row is missing (a phase skipped or
    failed): silence must not read as a pass. Cases that measured nothing (not selected) are
    left out."""
    measured = {m.case for m in results.measurements}
    missing = []
    for (case, name, system), (_, text) in _targets(config).items():
        if case not in measured:
            continue
        if results.find(case, name, system) is None or results.find(case, name, SYFT) is None:
            missing.append(f"case {case} {name} vs {system} ({text})")
    return missing


def summary(verdicts: Sequence[Verdict]) -> str:
    judged = [v for v in verdicts if v.limit is not None]
    passed = sum(v.result == "PASS" for v in judged)
    return f"targets: {passed} PASS, {len(judged) - passed} MISS of {len(judged)}"


# ---------------------------------------------------------------------------------------- outputs
def write_json(path: str, config: Config, results: Results, verdicts: Sequence[Verdict],
               elapsed_s: float) -> None:
    import torch
    import zmq
    document = {
        "config": asdict(config),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
                    "cpus": cpu_count(), "platform": platform.platform()},
        "elapsed_s": elapsed_s,
        "measurements": [m.to_json() for m in results.measurements],
        "verdicts": [{**asdict(v), "result": v.result} for v in verdicts],
        "notices": [asdict(n) for n in results.notices],
        "unjudged_targets": unjudged(results, config),
    }
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1)


def plot(path: str, results: Results, verdicts: Sequence[Verdict]) -> str:
    """Draw the table as one bar chart per case (log scale); returns what happened."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: --plot skipped"
    cases = sorted({m.case for m in results.measurements})
    if not cases:
        return "nothing was measured: --plot skipped"
    by_row = {(v.case, v.name, v.system): v for v in verdicts}
    charted = {case: _chart_rows(results, case) for case in cases}
    heights = [len(rows) + 1 for rows in charted.values()]
    figure, axes = plt.subplots(len(cases), 1, figsize=(12, 0.6 * len(cases) + 0.3 * sum(heights)),
                                squeeze=False, gridspec_kw={"height_ratios": heights})
    for axis, (case, rows) in zip(axes[:, 0], charted.items()):
        unit = rows[0].unit if rows else "s"
        labels = [f"{m.name} | {m.system}" for m in rows]
        colors = [_color(m.system) for m in rows]
        axis.barh(range(len(rows)), [m.median for m in rows], color=colors)
        axis.set_yticks(range(len(rows)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_title(f"case {case} ({'seconds' if unit == 's' else 'bytes'}, log scale)",
                       fontsize=9, loc="left")
        for index, m in enumerate(rows):
            verdict = by_row.get((m.case, m.name, m.system))
            text = format_value(m, m.median)
            if verdict is not None:
                text += f"  {format_ratio(verdict.ratio)} {verdict.result}".rstrip()
            axis.text(m.median, index, " " + text, va="center", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"chart written to {path}"


def _chart_rows(results: Results, case: int) -> list[Measurement]:
    """A case's rows in one unit (seconds if it has any timings): one axis, one unit."""
    in_case = [m for m in ordered(results.measurements) if m.case == case and m.median > 0]
    unit = "s" if any(m.unit == "s" for m in in_case) else "B"
    return [m for m in in_case if m.unit == unit]


def _color(system: str) -> str:
    palette = {SYFT: "tab:blue", SYFT_DERIVED: "tab:blue", SYFT_PLAN: "tab:blue",
               SYFT_SEND: "tab:cyan",
               TORCH: "tab:orange", RAW_ZMQ: "tab:green", MEMCPY: "tab:gray", LOCAL: "tab:purple",
               LEAN: "tab:brown", LEAN_INTERLEAVED: "tab:brown", RAY: "tab:red",
               RAY_ZERO_COPY: "tab:red"}
    return palette.get(system, "tab:olive")

