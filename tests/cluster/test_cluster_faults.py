"""Faults injected for real into the consortium's shape (tests/cluster/conftest.py): a broker
node killed with SIGKILL, frozen with SIGSTOP, clients' connections cut, the database primary
stopped and its standby promoted. Each test streams one abnormal refill per pump and counts
what was lost and what took effect twice (both must be 0), and times how soon pages resume.

Each test writes what it measured to build/cluster-results/<test>.json (the README quotes it)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.contracts.vocabulary import AlertKind
from tests.cluster.conftest import Consortium
from tests.cluster.harness import ClusterNode
from tests.e2e.story import abnormal_refill_body
from tests.e2e.test_faults import _lost_and_twice, _prepare
from tests.e2e.topology import Topology
from tests.helpers import TRANSIENT, wait_until

pytestmark = pytest.mark.cluster

PUMPS = 16
RESULTS = Path(__file__).resolve().parents[2] / "build" / "cluster-results"
PAGES_RESUME_S = 10.0


def submit_refill(system: Topology, serial: str, labeled: float, statuses: Counter[str],
                  *, timeout_s: float = 120) -> None:
    """One abnormal refill, as a nurse's client would: again with the same Idempotency-Key
    while the API answers 503 (or not at all), until it is committed (201)."""
    body = abnormal_refill_body(serial, labeled, days_ago=0, elapsed_days=14)
    deadline = time.monotonic() + timeout_s
    with system.client("scheduling", "nurse") as sch:
        while True:
            try:
                r = sch.post("/v1/refills", json=body, headers={"Idempotency-Key": f"c-{serial}"})
                statuses[str(r.status_code)] += 1
                if r.status_code == 201:
                    return
                assert r.status_code == 503, r.text  # never a 500 nor a 4xx
                assert r.headers["content-type"].startswith("application/problem+json")
            except httpx.TransportError:
                statuses["no answer"] += 1
            assert time.monotonic() < deadline, f"refill of {serial} never committed: {statuses}"
            time.sleep(0.3)


def stream(c: Consortium, center: str, fault: Callable[[], None], *, pumps: int = PUMPS,
           pace_s: float = 0.0) -> tuple[dict[str, float], float, Counter[str]]:
    """Pumps on therapy, then one abnormal refill per pump (`pace_s` apart after the fault);
    `fault()` runs after a third of them. Returns the labeled flow per pump, the time the
    fault began, the API's answers."""
    labeled = _prepare(c.system, c.receiver, center, count=pumps)
    serials = list(labeled)
    statuses: Counter[str] = Counter()
    third = len(serials) // 3
    for serial in serials[:third]:
        submit_refill(c.system, serial, labeled[serial], statuses)
    began = time.perf_counter()
    fault()
    for serial in serials[third:]:
        submit_refill(c.system, serial, labeled[serial], statuses)
        time.sleep(pace_s)
    return labeled, began, statuses


def pages(c: Consortium, center: str) -> list[tuple[float, dict]]:
    """The pages accepted for this centre's flow alerts, with their arrival (perf_counter)."""
    with c.receiver.lock:
        got = [(r.arrived_perf_s, json.loads(r.body)) for r in c.receiver.requests
               if r.answered == 200 and r.path == f"/{center}/l1"]
    return [(t, p) for t, p in got if p["alert"]["kind"] == AlertKind.FLOW_ABNORMAL]


def outcome(c: Consortium, center: str, labeled: dict[str, float], began: float,
            **measured: object) -> dict[str, object]:
    """Lost and doubled alerts, readings and pages, and how soon after the fault pages came
    again; written to build/cluster-results/<test>.json."""
    lost, twice = _lost_and_twice(c.system, center, labeled, c.cluster.ctl)
    wait_until(lambda: {p["alert"]["pump_serial"] for _, p in pages(c, center)} >= set(labeled),
               what=f"a page for every pump of {center}", timeout_s=60)
    got = pages(c, center)
    ids = [p["alert"]["id"] for _, p in got]
    # pages of the refills submitted after the fault: the first shows when paging resumed
    late = list(labeled)[len(labeled) // 3:]
    after = sorted(t for t, p in got if p["alert"]["pump_serial"] in late)
    result = {
        "alerts_lost": lost, "readings_counted_twice": twice,
        "pages": len(got), "pages_doubled": len(ids) - len(set(ids)),
        "pages_resumed_after_fault_s": round(after[0] - began, 2) if after else None,
        "last_page_after_fault_s": round(after[-1] - began, 2) if after else None,
        **measured,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = center.lower()
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{center}: {json.dumps(result, default=str)}")  # noqa: T201 - the run's figures
    return result


def _services_queues(c: Consortium) -> dict[str, tuple[str, list[str]]]:
    return {q: v for q, v in c.cluster.queues().items()
            if not q.endswith((".dlq", ".retry")) and q != "pharmacy.orders"}


def _back_to_three(c: Consortium, node: ClusterNode) -> None:
    """Start the node again, so the next test finds three: the quorum queues take it back."""
    c.cluster.restart(node)
    wait_until(lambda: c.cluster.running_nodes() == {n.node for n in c.cluster.nodes},
               what="three running nodes", timeout_s=120, ignoring=TRANSIENT)


def test_the_services_queues_are_quorum_queues_on_the_three_nodes(consortium: Consortium):
    queues = consortium.cluster.queues()
    nodes = {n.node for n in consortium.cluster.nodes}
    assert _services_queues(consortium), "no queues declared"
    for name, (_, members) in queues.items():
        assert set(members) == nodes, f"{name} is on {members}"
    # each process starts at a node of its own: the services' connections spread over the nodes
    assert len({port for name, port, _ in consortium.cluster.connections()
                if name.startswith("hai ")}) >= 2


def _leader(c: Consortium) -> ClusterNode:
    """The node leading most of the services' quorum queues."""
    leaders = Counter(leader for leader, _ in _services_queues(c).values())
    return c.cluster.node(leaders.most_common(1)[0][0])


def _relay_node(c: Consortium) -> ClusterNode:
    """The node that a scheduling process's publisher (its outbox relay) is connected to."""
    pids = {p.popen.pid for name, p in c.system.procs.items()
            if name.startswith("scheduling") and p.popen is not None}
    ports = Counter(port for name, port, pid in c.cluster.connections()
                    if name == "hai publisher" and pid in pids)
    assert ports, "no relay connection of the scheduling service"
    return c.cluster.node_on_port(ports.most_common(1)[0][0])


@pytest.mark.parametrize(("center", "choose"), [("C-KILL-LEADER", _leader),
                                                ("C-KILL-RELAY", _relay_node)],
                         ids=["leading-the-queues", "the-relay-is-on"])
def test_broker_node_killed(consortium: Consortium, center: str,
                            choose: Callable[[Consortium], ClusterNode]):
    """kill -9 of a node mid-stream: nothing lost or doubled, pages again within 10 s."""
    c = consortium
    killed: list[ClusterNode] = []

    def kill() -> None:
        node = choose(c)
        node.kill()
        killed.append(node)

    try:
        labeled, began, statuses = stream(c, center, kill)
        result = outcome(c, center, labeled, began, killed=killed[0].node,
                         api_answers=dict(statuses))
    finally:
        for node in killed:
            _back_to_three(c, node)
    assert (result["alerts_lost"], result["readings_counted_twice"], result["pages_doubled"]) \
        == (0, 0, 0)
    resumed = result["pages_resumed_after_fault_s"]
    assert isinstance(resumed, float) and resumed <= PAGES_RESUME_S, resumed


PAUSE_S = 30.0


def test_node_paused_for_30_s_and_resumed(consortium: Consortium):
    c = consortium
    paused: list[ClusterNode] = []
    resumed = threading.Event()

    def pause_leader() -> None:
        node = _leader(c)
        node.pause()
        paused.append(node)

        def resume_later() -> None:
            time.sleep(PAUSE_S)
            node.resume()
            resumed.set()

        threading.Thread(target=resume_later, daemon=True).start()

    try:
        labeled, began, statuses = stream(c, "C-PAUSE", pause_leader)
        resumed.wait(PAUSE_S + 10)
        result = outcome(c, "C-PAUSE", labeled, began, paused=paused[0].node, paused_s=PAUSE_S,
                         api_answers=dict(statuses))
    finally:
        for node in paused:
            node.resume()
    assert (result["alerts_lost"], result["readings_counted_twice"], result["pages_doubled"]) \
        == (0, 0, 0)


def test_client_connections_cut_mid_batch(consortium: Consortium):
    """Every connection of the services (consumers mid-batch, relays mid-publish) is closed by
    the broker, three times, while the refills stream in."""
    c = consortium
    cuts: list[int] = []
    cutting = threading.Thread(target=lambda: _cut_three_times(c, cuts))

    labeled, began, statuses = stream(c, "C-CUT", cutting.start, pace_s=1.0)
    cutting.join()
    result = outcome(c, "C-CUT", labeled, began, connections_cut=cuts,
                     cuts_took_s=round(time.perf_counter() - began, 1),
                     api_answers=dict(statuses))
    assert sum(cuts) > 0
    assert (result["alerts_lost"], result["readings_counted_twice"], result["pages_doubled"]) \
        == (0, 0, 0)


CUT = ('length([rabbit_networking:close_connection(P, "cut by the cluster fault test") '
       '|| P <- rabbit_networking:connections()]).')


def _cut_three_times(c: Consortium, cuts: list[int]) -> None:
    """Close every client connection of the cluster (only the services' are there: consumers
    mid-batch, relays mid-publish), three times, a second apart, while the refills stream in."""
    for _ in range(3):
        out = c.cluster.ctl("eval", CUT).stdout.strip()
        cuts.append(int(out) if out.isdigit() else 0)
        time.sleep(1.0)


@pytest.mark.consumes_standby
def test_database_primary_stopped_and_standby_promoted(consortium: Consortium):
    """The primary stops at once mid-stream; 3 s later the standby is promoted. Meanwhile the
    APIs answer 503; they recover by themselves (the multi-host URL finds the new primary)."""
    c = consortium
    seen: Counter[str] = Counter()
    probing = threading.Event()
    times: dict[str, float] = {}

    def probe() -> None:
        with c.system.client("inventory", "nurse") as inv:
            while probing.is_set():
                try:
                    seen[str(inv.get("/v1/pump-models").status_code)] += 1
                except httpx.TransportError:
                    seen["no answer"] += 1
                time.sleep(0.2)

    def fail_over() -> None:
        c.pg.kill_primary()
        times["stopped"] = time.perf_counter()
        probing.set()
        threading.Thread(target=probe, daemon=True).start()

        def promote_later() -> None:
            time.sleep(3)
            c.pg.promote()
            times["promoted"] = time.perf_counter()

        threading.Thread(target=promote_later, daemon=True).start()

    labeled, began, statuses = stream(c, "C-DB", fail_over)
    wait_until(lambda: "promoted" in times, what="the standby promoted", timeout_s=60)
    wait_until(lambda: httpx.get(c.system.url("scheduling") + "/readyz", timeout=5)
               .status_code == 200, what="the APIs to recover", timeout_s=60, ignoring=TRANSIENT)
    recovered = time.perf_counter()
    probing.clear()
    result = outcome(c, "C-DB", labeled, began, api_answers=dict(statuses),
                     probe_answers=dict(seen),
                     recovered_after_promotion_s=round(recovered - times["promoted"], 2))
    assert (result["alerts_lost"], result["readings_counted_twice"], result["pages_doubled"]) \
        == (0, 0, 0)
    assert set(seen) <= {"200", "503"}, seen  # never a 500
    assert seen["503"] > 0 or statuses["503"] > 0
