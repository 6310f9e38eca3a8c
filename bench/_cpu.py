"""Where a benchmark's CPU went: CPU seconds by process, read off /proc once a second; and how
long each process waited for a CPU (runnable, not running: the kernel's run delay of its
threads, /proc/PID/task/*/schedstat), and what the host's other guests took (steal, /proc/stat).

The processes: the services a benchmark started (by their names), PostgreSQL's backends of its
databases (by service), PostgreSQL's other processes, RabbitMQ's node, and the benchmark itself
(with the children it started that are not services). Each phase (`phase(name)`) gets the CPU
seconds spent while it ran. A process that ends between two readings loses at most its last
second. Linux only, and only for a PostgreSQL and RabbitMQ on this machine: elsewhere the
figures are empty.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

TICK_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process so far (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def waited_s(pid: int) -> float | None:
    """Seconds the threads of a process have waited for a CPU so far, runnable and not running
    (the kernel's run delay; None when the process is gone or the kernel does not say). A
    thread that ended takes its wait with it: read it as a count that may go back."""
    total, seen = 0, False
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9 if seen else None


def steal_s() -> float | None:
    """CPU seconds the hypervisor gave the host's other guests while this machine's CPUs
    wanted to run, over all its CPUs, so far (/proc/stat's `steal`; None where not Linux)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuMeter:
    """Reads the CPU of the benchmark's processes every TICK_S in a thread of its own."""

    def __init__(self, services: Mapping[str, int], dbs: Mapping[str, str]) -> None:
        """`services`: pid by service process name; `dbs`: SQLAlchemy URL by service."""
        self.services = dict(services)
        self.db_names = {url.rsplit("/", 1)[1]: service for service, url in dbs.items()}
        self.admin_url = next(iter(dbs.values())).replace("postgresql+psycopg://", "postgresql://", 1)
        self.last: dict[int, float] = {}
        self.spent: dict[str, dict[str, float]] = {}
        self.last_wait: dict[int, float] = {}
        self.waited: dict[str, dict[str, float]] = {}
        self.last_steal: dict[int, float] = {}
        self.stolen: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self.current: str | None = None
        self.started_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-meter", daemon=True)
        self.available = Path("/proc/self/stat").exists()

    def start(self) -> CpuMeter:
        if self.available:
            self._read()  # the baseline
            self._thread.start()
        return self

    def phase(self, name: str | None) -> None:
        """Count from now on into phase `name` (None: into none)."""
        if not self.available:
            return
        self._read()
        now = time.monotonic()
        with self._lock:
            if self.current is not None:
                self.walls[self.current] = self.walls.get(self.current, 0.0) + now - self.started_at
            self.current, self.started_at = name, now

    def stop(self) -> None:
        self.phase(None)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self._read()

    def _labels(self) -> dict[int, str]:
        """Every process to read, by label."""
        labels = {pid: name for name, pid in self.services.items()}
        me = os.getpid()
        labels[me] = "bench"
        for child in _children(me):
            labels.setdefault(child, "bench")
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
                rows = conn.execute("SELECT pid, datname FROM pg_stat_activity "
                                    "WHERE pid <> pg_backend_pid()").fetchall()
        except psycopg.Error:
            rows = []
        for pid, datname in rows:
            service = self.db_names.get(datname or "")
            labels[int(pid)] = f"postgres: {service}" if service else "postgres: other"
        for pid in _pids_of("^postgres"):
            labels.setdefault(pid, "postgres: other")
        for pid in _pids_of("beam.smp"):
            labels[pid] = "rabbitmq"
        return labels

    def _read(self) -> None:
        labels = self._labels()
        with self._lock:
            spent = self.spent.setdefault(self.current, {}) if self.current else None
            waited = self.waited.setdefault(self.current, {}) if self.current else None
            for pid, label in labels.items():
                _count(spent, label, self.last, pid, cpu_s(pid))
                _count(waited, label, self.last_wait, pid, waited_s(pid))
            stolen = self.stolen if self.current else None
            _count(stolen, self.current or "", self.last_steal, 0, steal_s())

    def figures(self) -> dict[str, Any]:
        """By phase: its seconds, the cores it used in all, CPU seconds by process, seconds
        waited for a CPU by process, and the CPU seconds the host's other guests took (steal)."""
        out: dict[str, Any] = {}
        for phase, spent in self.spent.items():
            wall = self.walls.get(phase, 0.0)
            total = sum(spent.values())
            waited = self.waited.get(phase, {})
            out[phase] = {"wall_s": round(wall, 1), "cpu_s": round(total, 1),
                          "cores": round(total / wall, 2) if wall else None,
                          "by_process_cpu_s": {k: round(v, 2) for k, v in
                                               sorted(spent.items(), key=lambda kv: -kv[1])},
                          "by_process_waited_s": {k: round(v, 2) for k, v in
                                                  sorted(waited.items(), key=lambda kv: -kv[1])},
                          "steal_s": round(self.stolen[phase], 2) if phase in self.stolen else None}
        return out


def _count(into: dict[str, float] | None, label: str, last: dict[int, float], key: int,
           now: float | None) -> None:
    """Add to `into[label]` how much a counter (`now`; None: gone) grew since its last reading
    (`last[key]`), which it becomes; nothing for its first reading, nor when it went back."""
    if now is None:
        return
    before = last.get(key)
    last[key] = now
    if into is not None and before is not None:
        into[label] = into.get(label, 0.0) + max(0.0, now - before)


def _pids_of(pattern: str) -> list[int]:
    """The pids of processes whose command line matches `pattern` (pgrep -f)."""
    try:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                               timeout=5, check=False).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(p) for p in found if "pgrep" not in _cmdline(int(p))]


def per_unit_ms(spent: Mapping[str, float], units: int) -> dict[str, float]:
    """CPU milliseconds per unit (a reading, an alert) by process, and in all."""
    if not units:
        return {}
    out = {label: round(seconds * 1000 / units, 1) for label, seconds in spent.items()}
    out["all"] = round(sum(spent.values()) * 1000 / units, 1)
    return out


def reference_loop_ms(repeats: int = 5) -> float:
    """How fast this machine is now: the best of `repeats` timings of one fixed loop of pure
    Python, in ms. The same code costs a third more CPU on a slow minute of a shared host than on
    a fast one; a run's figures read beside it (a larger number: a slower machine)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)

