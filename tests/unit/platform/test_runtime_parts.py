"""A service's own state on its runtime is typed: attached once by its bootstrap, found by its
type (shared/ knows no service's types)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.runtime import Worker, lower_autogroup
from tests.unit.platform.toyservice import toy_runtime


@dataclass
class ToyState:
    widgets_seen: int


@dataclass
class OtherState:
    name: str


def test_a_part_is_found_by_its_type_and_a_missing_one_is_named(tmp_path: Path) -> None:
    runtime = toy_runtime(tmp_path)
    state = runtime.attach(ToyState(widgets_seen=0))
    other = runtime.attach(OtherState(name="x"))
    assert runtime.part(ToyState) is state and runtime.part(OtherState) is other
    runtime.part(ToyState).widgets_seen += 1
    assert state.widgets_seen == 1
    with pytest.raises(LookupError, match="toy runtime has no int"):
        runtime.part(int)


def test_the_runtime_knows_when_it_was_built_on_its_clock(tmp_path: Path) -> None:
    runtime = toy_runtime(tmp_path)
    assert runtime.started_at == runtime.clock.now()


def test_a_worker_of_bulk_work_can_yield_the_cpu() -> None:
    """`hai worker --nice N` lowers the process's CPU priority by N; 0 leaves it as it was."""
    probe = ("import os; from shared.runtime import lower_cpu_priority; "
             "before = os.getpriority(os.PRIO_PROCESS, 0); lower_cpu_priority({n}); "
             "print(os.getpriority(os.PRIO_PROCESS, 0) - before)")
    for nice, lowered in ((0, 0), (5, 5)):
        out = subprocess.run([sys.executable, "-c", probe.format(n=nice)], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parents[3])
        assert int(out.stdout) == lowered, out


AUTOGROUP_PROBE = ("import os; from shared.runtime import lower_cpu_priority; "
                   "nice = lambda: int(open('/proc/self/autogroup').read().split()[-1]); "
                   "before = nice(); lower_cpu_priority({n}); print(nice() - before)")


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroups")
def test_a_worker_that_leads_its_session_lowers_its_autogroup_too() -> None:
    """Under autogroups a nice weighs a process only against its own session's: a worker that
    leads its session (honcho starts each so) lowers its autogroup's nice by N as well."""
    for nice, lowered in ((0, 0), (5, 5)):
        out = subprocess.run([sys.executable, "-c", AUTOGROUP_PROBE.format(n=nice)],
                             capture_output=True, text=True, check=True, start_new_session=True,
                             cwd=Path(__file__).resolve().parents[3])
        assert int(out.stdout) == lowered, out


# The session's leader (a shell, say) runs the worker as one process among others of its session;
# it prints what the worker measured and whether the session's autogroup kept its nice.
SESSION_LEADER = ("import subprocess, sys; group = open('/proc/self/autogroup').read(); "
                  "worker = subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True, "
                  "text=True, check=True); "
                  "print(worker.stdout.strip(), open('/proc/self/autogroup').read() == group)")


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroups")
def test_a_worker_among_others_of_its_session_never_lowers_theirs() -> None:
    """A worker run beside other processes of its session (from a shell) lowers only itself:
    the session's autogroup, which the others share, keeps its nice.

    The session is a new one: the test's own may be the root autogroup (the session of PID 1,
    as in a container), whose /proc/self/autogroup reads empty and cannot be written."""
    out = subprocess.run([sys.executable, "-c", SESSION_LEADER, AUTOGROUP_PROBE.format(n=5)],
                         capture_output=True, text=True, check=True, start_new_session=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.split() == ["0", "True"], out


def test_an_autogroup_is_lowered_by_nice_up_to_19(tmp_path: Path) -> None:
    """`lower_autogroup` adds to the group's nice (the kernel's file), never past 19; where
    there is no such file (no autogroups), or it reads empty (the root autogroup: PID 1's session,
    which has no nice of its own), it changes nothing."""
    group = tmp_path / "autogroup"
    group.write_text("/autogroup-42 nice 3\n")
    assert lower_autogroup(10, group) == 13 and group.read_text() == "13\n"
    group.write_text("/autogroup-42 nice 15\n")
    assert lower_autogroup(10, group) == 19
    assert lower_autogroup(10, tmp_path / "absent") is None
    group.write_text("")
    assert lower_autogroup(10, group) is None and group.read_text() == ""


def test_a_worker_without_its_relay_leaves_the_outbox_to_the_others(tmp_path: Path) -> None:
    """`hai worker --no-relay` (alerts' flow worker) runs no outbox relay: the process that pages
    an abnormal flow does nothing else; the service's other workers relay its events."""
    for relay, relays in ((True, ["toy-relay"]), (False, [])):
        (tmp_path / str(relay)).mkdir()
        worker = Worker(toy_runtime(tmp_path / str(relay)), relay=relay, consumers=False,
                        jobs=False)
        worker.start()
        try:
            assert [t.name for t in worker.threads if "relay" in t.name] == relays
        finally:
            worker.stop()


def test_only_a_relay_that_sends_no_urgent_event_lingers(tmp_path: Path) -> None:
    """A relay woken by a commit waits HAI_OUTBOX_LINGER_SECONDS to batch the next commits
    (shared.messaging.relay.OutboxRelay), unless it sends the contract's urgent events: without
    an urgent lane (SQLite, the in-process bus) scheduling's one relay sends its flow readings,
    and so never waits; a service with no urgent event (the toy) lingers."""
    from sqlalchemy import create_engine

    from shared.clock import MovableClock
    from shared.messaging.inproc import InProcessBus
    from shared.runtime import build_runtime
    from shared.settings import Settings
    from tests.unit.platform.toyservice import metadata, platform

    settings = Settings(env="test", outbox_linger_seconds=0.05)
    for name, lingers in (("toy", [0.05]), ("scheduling", [0.0])):
        engine = create_engine(f"sqlite:///{tmp_path}/{name}.db")
        metadata.create_all(engine)
        runtime = build_runtime(name=name, settings=settings, metadata=metadata, platform=platform,
                                clock=MovableClock(), bus=InProcessBus(), engine=engine)
        worker = Worker(runtime, consumers=False, jobs=False)
        worker.start()
        try:
            assert [r.linger_seconds for r in worker.relays] == lingers, name
        finally:
            worker.stop()
            engine.dispose()


def _worker_started(tmp_path: Path, *options: str) -> dict[str, object]:
    """Run `hai worker scheduling OPTIONS` on a SQLite file until it says what it started."""
    import json
    import os

    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env.update(HAI_SCHEDULING_DATABASE_URL=f"sqlite:///{tmp_path}/scheduling.db",
               HAI_LOG_LEVEL="INFO", HAI_LOG_JSON="true")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "hai"), "worker", "scheduling",
                             *options], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"worker.started"' in line:
                return dict(json.loads(line[line.index("{"):]))
        raise AssertionError(f"the worker exited with {proc.wait()} before it started")
    finally:
        # killed, not stopped: nothing here needs a clean stop, and a wait with a timeout
        # breaks under faketime (the unit tests also run at later dates)
        proc.kill()
        proc.wait()


def test_hai_worker_runs_only_the_parts_it_is_asked_to(tmp_path: Path) -> None:
    """deploy/Procfile's scheduling: its relay alone (`--no-jobs --no-consumers`: one thread,
    no job), and workers of the sweep and the consumers that relay nothing (`--no-relay`)."""
    (tmp_path / "relay").mkdir()
    (tmp_path / "bulk").mkdir()
    relay = _worker_started(tmp_path / "relay", "--no-jobs", "--no-consumers")
    assert (relay["threads"], relay["jobs"]) == (1, [])  # SQLite: the relay, no listener
    bulk = _worker_started(tmp_path / "bulk", "--no-relay", "--nice", "10")
    assert "sweep" in bulk["jobs"] and int(str(bulk["threads"])) > 1  # its consumers


def test_a_worker_that_would_do_nothing_is_refused(tmp_path: Path) -> None:
    """`--no-relay --no-consumers --no-jobs`: a process that would idle unseen is refused, with
    the reason, before it touches the database."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env["HAI_SCHEDULING_DATABASE_URL"] = f"sqlite:///{tmp_path}/scheduling.db"
    out = subprocess.run([str(Path(sys.executable).parent / "hai"), "worker", "scheduling",
                          "--no-relay", "--no-consumers", "--no-jobs"], env=env,
                         capture_output=True, text=True)
    said = " ".join(out.stderr.replace("│", " ").split())  # typer's box, wrapped to any width
    assert out.returncode == 2 and "would do nothing" in said, out
    assert not (tmp_path / "scheduling.db").exists()
