"""Does a worker's `--nice 10` give the CPU to the others? Two busy processes share one core; one
of them lowers its priority as `hai worker --nice 10` does (`lower_cpu_priority`), the other
keeps it; the figure is the share of the core the other gets.

Three ways to start them: in one session (as bench/time_to_page.py started the services until
2026-12-03), each in a session of its own with nice(2) alone (what a `--nice 10` worker did
under honcho, which starts every process of deploy/Procfile in a session of its own, until
2026-12-03), and each in a session of its own with the session's autogroup lowered too (what it
does now). On a kernel with autogroups (sched(7)), a nice weighs a process only against the
processes of its own session: in sessions of their own, nice alone leaves the core half and
half. Baseline: both at the same priority (half and half). Runs on any Linux; no services.

And two ways of containers (each process in a cgroup of its own, as Docker and Kubernetes put
each container; needs a writable cgroup v1 `cpu` hierarchy, as root has here, else those figures
are None): the same CPU weight with the bulk one at `--nice 10` (what deploy/docker-compose.yml
and deploy/k8s gave the workers of bulk work until 2026-12-03: a nice weighs only inside its own
cgroup, and autogroups apply only outside cgroups), and the bulk one at compose's `cpu_shares:
128` beside the default 1024 (now; in k8s a pod's CPU request sets the same weight).

    .venv/bin/python -m bench.nice_sessions [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NICE = 10

# the child: pinned to one core, lowers itself as told, then spins from `start` for `seconds`
# and prints the CPU seconds it got
CHILD = """
import os, sys, time
from shared.runtime import lower_cpu_priority
how, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
if how == "nice":
    os.nice(NICE)
elif how == "lowered":
    lower_cpu_priority(NICE)
while time.time() < start:
    time.sleep(0.001)
used = time.process_time()
while time.time() < start + seconds:
    pass
print(time.process_time() - used)
""".replace("NICE", str(NICE))


# the cgroup v1 `cpu` hierarchy (Docker's cpu_shares is its cpu.shares; default 1024)
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
DEFAULT_SHARES = 1024
BULK_SHARES = 128  # deploy/docker-compose.yml's bulk workers


def share(*, sessions: bool, how: str, seconds: float,
          cgroup_shares: tuple[int, int] | None = None) -> float:
    """The share of one core that the process keeping its priority gets beside one that lowers
    itself `how` (`same`: does not), both started in sessions of their own or not; with
    `cgroup_shares` (kept, lowered), each in a cpu cgroup of its own with those shares."""
    start = time.time() + 1.0  # both have started (Python's start-up) before either spins
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, lowering, str(start), str(seconds)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              start_new_session=sessions,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
             for lowering in ("same", how)]
    groups = ([] if cgroup_shares is None else
              [_join_cgroup(p.pid, shares) for p, shares in zip(procs, cgroup_shares, strict=True)])
    try:
        kept, lowered = (float(p.communicate(timeout=seconds + 30)[0]) for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for group in groups:
            group.rmdir()  # empty once its process has exited
    return kept / (kept + lowered)


def cgroups_writable() -> bool:
    """Whether this process may make cpu cgroups (a cgroup v1 `cpu` hierarchy, as root)."""
    return (CPU_CGROUPS / "cpu.shares").exists() and os.access(CPU_CGROUPS, os.W_OK)


def _join_cgroup(pid: int, shares: int) -> Path:
    """Put `pid` into a new cpu cgroup of its own with `shares` (before it starts spinning)."""
    group = CPU_CGROUPS / f"hai-bench-nice-{os.getpid()}-{pid}"
    group.mkdir()
    (group / "cpu.shares").write_text(str(shares))
    (group / "cgroup.procs").write_text(str(pid))
    return group


def run(seconds: float = 3.0) -> dict[str, Any]:
    autogroups = Path("/proc/self/autogroup").exists() and Path(
        "/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    figures: dict[str, Any] = {
        "autogroups": autogroups,
        "same_priority": share(sessions=True, how="same", seconds=seconds),
        "one_session_nice": share(sessions=False, how="nice", seconds=seconds),
        "own_sessions_nice_alone": share(sessions=True, how="nice", seconds=seconds),
        "own_sessions_nice_and_autogroup": share(sessions=True, how="lowered", seconds=seconds),
        "cgroups": cgroups_writable(),
    }
    figures.update({
        "containers_same_weight_nice": share(
            sessions=True, how="lowered", seconds=seconds,
            cgroup_shares=(DEFAULT_SHARES, DEFAULT_SHARES)) if figures["cgroups"] else None,
        "containers_cpu_shares": share(
            sessions=True, how="same", seconds=seconds,
            cgroup_shares=(DEFAULT_SHARES, BULK_SHARES)) if figures["cgroups"] else None,
    })
    base = f"{figures['same_priority']:.0%} (both at the same priority)"
    # each label says how the two were started, after "share of one core kept beside a worker"
    rows = [
        (f"at --nice {NICE}, in one session, nice(2): as bench/time_to_page.py started the "
         "services until 2026-12-03", "one_session_nice"),
        (f"at --nice {NICE}, each in a session of its own (as honcho starts deploy/Procfile's), "
         "nice(2) alone: `--nice 10` until 2026-12-03", "own_sessions_nice_alone"),
        (f"at --nice {NICE}, each in a session of its own, nice(2) and the session's autogroup "
         "lowered: `--nice 10` now", "own_sessions_nice_and_autogroup"),
        ("in cpu cgroups of their own (containers) at the same weight, the worker even at "
         f"`--nice {NICE}`: deploy/'s containers until 2026-12-03 (their workers ran no nice)",
         "containers_same_weight_nice"),
        (f"in cpu cgroups of their own, the worker's at cpu.shares {BULK_SHARES} beside "
         f"{DEFAULT_SHARES}: deploy/docker-compose.yml's `cpu_shares` now",
         "containers_cpu_shares"),
    ]
    # the ones with an aim: what `--nice 10` does now, and the containers' weights now
    aimed = ("own_sessions_nice_and_autogroup", "containers_cpu_shares")
    figures["table"] = [
        {"measure": f"share of one core kept beside a worker {label}",
         "ours": "-" if figures[key] is None else f"{figures[key]:.0%}",
         "baseline": base, "ratio": "-",
         "aim": "≥ 80 %" if key in aimed else "-",
         "met": ("-" if figures[key] is None else "yes" if figures[key] >= 0.8 else "no")
         if key in aimed else "-"}
        for label, key in rows]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    figures = run(seconds=parser.parse_args().seconds)
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}, indent=2))
    for row in figures["table"]:
        print(f"{row['measure']}: {row['ours']} (baseline {row['baseline']}; aim {row['aim']}: "
              f"{row['met']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
