"""`python -m bench all` runs every benchmark on the local RabbitMQ and PostgreSQL and writes
bench/RESULTS.md: each figure beside its baseline measured in the same run, the ratio, the
machine and the date. `python -m bench NAME` runs one and keeps the other sections as they
were (each section says when and on what it was measured)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# name → (module, keyword arguments of its run())
BENCHMARKS: dict[str, tuple[str, dict[str, Any]]] = {
    "pipeline": ("bench.pipeline", {}),
    "api": ("bench.api_load", {}),
    "inventory": ("bench.inventory_api", {}),
    "page": ("bench.time_to_page", {}),
    "sweep": ("bench.sweep", {"sizes": [10_000, 100_000, 1_000_000]}),
    "fhir": ("bench.fhir_observations", {}),
    "surveillance": ("bench.surveillance", {}),
    "reports": ("bench.reports", {}),
    "burst": ("bench.burst", {}),
    "alerts_raise": ("bench.alerts_raise", {}),
    "claim_backlog": ("bench.claim_backlog", {}),
    "nice": ("bench.nice_sessions", {}),
}


def machine() -> str:
    """What the figures were measured on."""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


def run_one(name: str) -> dict[str, Any]:
    module_name, kwargs = BENCHMARKS[name]
    started = time.monotonic()
    try:
        module = importlib.import_module(module_name)
        figures = module.run(**kwargs)
        return {"ok": True, "seconds": round(time.monotonic() - started, 1), "figures": figures,
                **_provenance()}
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
        traceback.print_exc()
        return {"ok": False, "seconds": round(time.monotonic() - started, 1),
                "error": f"{type(exc).__name__}: {exc}", **_provenance()}


def _provenance() -> dict[str, str]:
    return {"measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}", "machine": machine()}


def table_for(name: str, figures: Any) -> list[dict[str, Any]]:
    """Rows of the summary table, for the benchmarks that do not make their own."""
    if not isinstance(figures, dict):
        return []
    if figures.get("table"):
        return list(figures["table"])
    if name == "pipeline":
        limit = figures["limit_msgs_per_s"]
        rows = []
        for label, key, ratio_key in (
                ("outbox → RabbitMQ → consumer committed, batch handler (one bulk_insert, a "
                 "COPY, per delivered batch)", "ours_batch_events_per_s", "ratio_ours_batch_to_limit"),
                ("the same with a plain handler (one INSERT, one database round trip, per "
                 "event)", "ours_events_per_s", "ratio_ours_to_limit"),
                ("RabbitBus alone, no database", "transport_msgs_per_s",
                 "ratio_transport_to_limit"),
                ("naive pika, one confirm at a time", "naive_msgs_per_s", None)):
            if key in figures:
                # the median of the rounds' own ratios (each pair measured back to back)
                ratio = figures[ratio_key] if ratio_key else figures[key] / limit
                spread = figures.get(f"{ratio_key}_range")
                aim = "≥ 50 % of limit" if key.startswith("ours") else "-"
                rows.append({"measure": label, "ours": f"{figures[key]:,.0f}/s",
                             "baseline": f"{limit:,.0f}/s (raw pika, the same messages "
                                         "through hai.events, pipelined, publisher and "
                                         "consumer in two processes)",
                             "ratio": f"{ratio:.0%}" + (
                                 f" (rounds {spread[0]:.0%}–{spread[1]:.0%})" if spread else ""),
                             "aim": aim,
                             "met": ("yes" if ratio >= 0.5 else "no") if aim != "-" else "-"})
        if "limit_direct_msgs_per_s" in figures and "ours_batch_events_per_s" in figures:
            direct = figures["limit_direct_msgs_per_s"]
            rows.append({"measure": "batch handler against raw pika through the default exchange "
                                    "(no routing, no message_id: lighter than the services' path)",
                         "ours": f"{figures['ours_batch_events_per_s']:,.0f}/s",
                         "baseline": f"{direct:,.0f}/s",
                         "ratio": f"{figures.get('ratio_ours_batch_to_direct_limit', 0):.0%}",
                         "aim": "-", "met": "-"})
        return rows
    if name == "sweep":
        rows = []
        idle = {k: v["idle_sweep_s"] for k, v in figures.items() if isinstance(v, dict)}
        for row in figures.values():
            if not isinstance(row, dict):
                continue
            aim = "< 1 s" if row["therapies"] == 100_000 else "-"
            rows.append({"measure": f"one sweep, {row['therapies']:,} therapies, {row['due']:,} due",
                         "ours": f"{row['sweep_s']:.2f} s",
                         "baseline": f"{row['idle_sweep_s']:.3f} s (same sweep, nothing due)",
                         "ratio": "-", "aim": aim,
                         "met": ("yes" if row["sweep_s"] < 1 else "no") if aim != "-" else "-"})
        if idle:
            rows.append({"measure": "idle sweep across sizes (cost follows rows due)",
                         "ours": ", ".join(f"{v:.3f} s" for v in idle.values()),
                         "baseline": "-", "ratio": "-", "aim": "flat", "met": "-"})
        return rows
    return []


def render(results: dict[str, dict[str, Any]]) -> str:
    """RESULTS.md from the gathered figures."""
    lines = [
        "# Benchmark results",
        "",
        "Measured with the local RabbitMQ and PostgreSQL; each section says when and on what.",
        "Each figure stands beside its baseline from the same run.",
        "Regenerate with `make bench` (or `.venv/bin/python -m bench all`; `python -m bench NAME`",
        "runs one and keeps the other sections).",
        "",
    ]
    for name, result in results.items():
        lines.append(f"## {name}")
        lines.append("")
        if "measured_at" in result:
            lines += [f"Measured {result['measured_at']} on {result['machine']}.", ""]
        if not result["ok"]:
            lines += [f"Failed after {result['seconds']} s: `{result['error']}`", ""]
            continue
        figures = result["figures"]
        table = table_for(name, figures)
        if table:
            lines.append("| measure | ours | baseline | ratio | aim | met |")
            lines.append("|---|---|---|---|---|---|")
            for row in table:
                lines.append("| {measure} | {ours} | {baseline} | {ratio} | {aim} | {met} |".format(
                    **{k: row.get(k, "") for k in ("measure", "ours", "baseline", "ratio", "aim",
                                                   "met")}))
            lines.append("")
        rest = {k: v for k, v in figures.items() if k != "table"} if isinstance(figures, dict) else figures
        lines += ["<details><summary>all figures</summary>", "", "```json",
                  json.dumps(rest, indent=2, default=str), "```", "", "</details>", ""]
        lines.append(f"({result['seconds']} s)")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("which", nargs="*", default=["all"],
                        help=f"all, or some of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--render", metavar="JSON",
                        help="only write RESULTS.md again from the figures of an earlier run")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.out).write_text(render(json.loads(Path(args.render).read_text())))
        return 0
    names = list(BENCHMARKS) if args.which == ["all"] else args.which
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {unknown}")
    json_out = Path(args.out).with_suffix(".json")
    # a run of some benchmarks keeps the others' last figures
    results: dict[str, dict[str, Any]] = {}
    if args.which != ["all"] and json_out.exists():
        results = {k: v for k, v in json.loads(json_out.read_text()).items() if k in BENCHMARKS}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = run_one(name)
        print(json.dumps(results[name], indent=2, default=str), flush=True)
    json_out.write_text(json.dumps(results, indent=2, default=str))
    Path(args.out).write_text(render(results))
    print(f"wrote {args.out}")
    return 0 if all(results[n]["ok"] for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
