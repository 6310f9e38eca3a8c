"""The deployment files name the probes, the contract's environment, and no dev secret."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.messaging.rabbit.connection import broker_urls
from shared.settings import DEV_JWT_SECRET

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SERVICES = {"inventory": 8001, "scheduling": 8002, "alerts": 8003}
# the command of each service's workers (two of them at least); alerts' abnormal flows have a
# worker of their own beside them (FLOW_WORKER), so that a sweep's burst never shares its interpreter
WORKER = {"inventory": ["hai", "worker", "inventory"],
          "scheduling": ["hai", "worker", "scheduling", "--no-relay"],
          "alerts": ["hai", "worker", "alerts", "--queue", "alerts.events"]}
# and it does nothing else: alerts' outbox relay runs in the other workers (--no-relay)
FLOW_WORKER = ["hai", "worker", "alerts", "--queue", "alerts.flow", "--no-relay"]
# scheduling's outbox (an abnormal flow's reading among a sweep's thousands) is relayed by a
# process that does nothing else; its workers (the sweep, the consumers) relay nothing
RELAY = ["hai", "worker", "scheduling", "--no-jobs", "--no-consumers"]
# on one machine (the Procfile) the workers of bulk work (alerts' bulk events, scheduling's sweep)
# yield the CPU to the flow worker and the relay; `exec`: the worker, not the `sh -c` that honcho
# runs each line through, leads the session honcho starts it in, so that its --nice lowers that
# session's autogroup too (shared.runtime.lower_cpu_priority; tests/e2e/test_procfile.py)
PROCFILE_WORKER = {**WORKER, "alerts": ["exec", *WORKER["alerts"], "--nice", "10"],
                   "scheduling": ["exec", *WORKER["scheduling"], "--nice", "10"]}
CONTRACT_ENV = {
    "HAI_AMQP_URL", "HAI_INVENTORY_DATABASE_URL", "HAI_SCHEDULING_DATABASE_URL",
    "HAI_ALERTS_DATABASE_URL", "HAI_INVENTORY_URL", "HAI_SCHEDULING_URL", "HAI_ALERTS_URL",
    "HAI_JWT_SECRET", "HAI_SWEEP_INTERVAL_SECONDS", "HAI_ENV",
}


def _no_dev_secret(text: str) -> None:
    assert DEV_JWT_SECRET not in text
    assert "hai-dev-secret" not in text


def test_compose_runs_every_service_on_rabbitmq_and_postgres_with_probes():
    text = (DEPLOY / "docker-compose.yml").read_text()
    _no_dev_secret(text)
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"rabbitmq", "postgres", "dashboard"} <= set(services)
    for name, port in SERVICES.items():
        api, worker = services[name], services[f"{name}-worker"]
        env = api["environment"]
        assert CONTRACT_ENV <= set(env), CONTRACT_ENV - set(env)
        assert env["HAI_ENV"] == "production"
        assert env["HAI_JWT_SECRET"].startswith("${HAI_JWT_SECRET:?")  # must be supplied
        assert "/readyz" in " ".join(api["healthcheck"]["test"])
        assert "--no-worker" in api["command"] and str(port) in api["command"]
        assert worker["command"] == WORKER[name]
        assert worker["deploy"]["replicas"] >= 2
        assert env["HAI_AMQP_URL"].startswith("amqp://") and "rabbitmq" in env["HAI_AMQP_URL"]
        assert env[f"HAI_{name.upper()}_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["alerts-flow-worker"]["command"] == FLOW_WORKER
    assert services["scheduling-relay"]["command"] == RELAY
    assert services["scheduling-relay"]["deploy"]["replicas"] >= 2


def test_kubernetes_manifests_have_probes_resources_config_and_secret():
    k8s = DEPLOY / "k8s"
    config = yaml.safe_load((k8s / "config.yaml").read_text())
    secret_text = (k8s / "secret.template.yaml").read_text()
    _no_dev_secret(secret_text)
    secret = yaml.safe_load(secret_text)
    assert config["kind"] == "ConfigMap" and secret["kind"] == "Secret"
    assert all(v == "" for v in secret["stringData"].values())  # template: nothing real, nothing dev
    provided = set(config["data"]) | set(secret["stringData"])
    assert CONTRACT_ENV <= provided, CONTRACT_ENV - provided
    for name, port in {**SERVICES, "dashboard": 8000}.items():
        text = (k8s / f"{name}.yaml").read_text()
        _no_dev_secret(text)
        docs = list(yaml.safe_load_all(text))
        kinds = [d["kind"] for d in docs]
        assert "Service" in kinds
        service = next(d for d in docs if d["kind"] == "Service")
        assert service["spec"]["ports"][0]["port"] == port
        commands = [d["spec"]["template"]["spec"]["containers"][0]["command"] for d in docs
                    if d["kind"] == "Deployment"]
        if name in WORKER:
            own = {"alerts": [FLOW_WORKER], "scheduling": [RELAY]}.get(name, [])
            assert sorted(c for c in commands if "worker" in c) == sorted([WORKER[name], *own])
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            (container,) = dep["spec"]["template"]["spec"]["containers"]
            refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
            assert refs == {"hai-config", "hai-secrets"}
            assert container["resources"]["limits"]["memory"]
            assert container["resources"]["requests"]["cpu"]
            assert "livenessProbe" in container
            if dep["metadata"]["name"].endswith("-api"):
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["readinessProbe"]["httpGet"]["port"] == port


# Docker's default CPU weight of a container (cpu_shares), which the others keep
DEFAULT_CPU_SHARES = 1024


def _millicores(cpu: str | int | float) -> float:
    """A Kubernetes CPU quantity ('500m', '1', 0.5) in millicores."""
    text = str(cpu)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def test_compose_gives_the_workers_of_bulk_work_a_fraction_of_the_cpu_weight():
    # in containers a nice weighs only against the container's own processes: the Procfile's
    # `--nice 10` is carried by the containers' CPU weights instead
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for bulk in ("alerts-worker", "scheduling-worker"):
        assert services[bulk]["cpu_shares"] <= DEFAULT_CPU_SHARES // 8, bulk
    for name in ("alerts-flow-worker", "scheduling-relay", "alerts", "scheduling", "postgres",
                 "rabbitmq"):
        assert services[name].get("cpu_shares", DEFAULT_CPU_SHARES) == DEFAULT_CPU_SHARES, name


def test_kubernetes_gives_the_flow_worker_and_the_relay_the_cpu_weight_of_five_bulk_workers():
    # a pod's CPU request is its CPU weight (cgroup cpu.weight) when the node is short of CPU
    def request(file: str, deployment: str) -> float:
        docs = yaml.safe_load_all((DEPLOY / "k8s" / file).read_text())
        dep = next(d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == deployment)
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        return _millicores(container["resources"]["requests"]["cpu"])

    bulk = max(request("alerts.yaml", "hai-alerts-worker"),
               request("scheduling.yaml", "hai-scheduling-worker"))
    assert request("alerts.yaml", "hai-alerts-flow-worker") >= 5 * bulk
    assert request("scheduling.yaml", "hai-scheduling-relay") >= 5 * bulk


def test_procfile_runs_each_api_with_two_workers():
    lines = [ln for ln in (DEPLOY / "Procfile").read_text().splitlines()
             if ln and not ln.startswith("#")]
    procs = dict(ln.split(": ", 1) for ln in lines)
    for name, port in SERVICES.items():
        assert procs[name] == f"hai serve {name} --no-worker --port ${{{name.upper()}_PORT:-{port}}}"
        assert sum(1 for cmd in procs.values() if cmd == " ".join(PROCFILE_WORKER[name])) == 2
    assert sum(1 for cmd in procs.values() if cmd == " ".join(FLOW_WORKER)) == 1
    assert sum(1 for cmd in procs.values() if cmd == " ".join(RELAY)) == 1
    assert procs["dashboard"].startswith("hai serve dashboard")
    env = (DEPLOY / "local.env").read_text()
    _no_dev_secret(env)


def test_the_hl7_bridge_is_its_own_process_and_off_unless_configured():
    lines = [ln for ln in (DEPLOY / "Procfile").read_text().splitlines()
             if ln and not ln.startswith("#")]
    procs = dict(ln.split(": ", 1) for ln in lines)
    assert procs["hl7_bridge"] == "hai hl7-bridge --if-enabled"  # idles without HAI_HL7_ENABLED
    assert "HAI_HL7_ENABLED=false" in (DEPLOY / "local.env").read_text()
    bridge = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["hl7-bridge"]
    assert bridge["profiles"] == ["hl7"] and bridge["command"] == ["hai", "hl7-bridge"]
    assert bridge["environment"]["HAI_HL7_ENABLED"] == "true"
    assert bridge["environment"]["HAI_HL7_BRIDGE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "hai_hl7_bridge" in (DEPLOY / "postgres-init.sql").read_text()
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "hl7-bridge.yaml").read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 0
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["hai", "hl7-bridge"]
    assert container["livenessProbe"]["tcpSocket"]["port"] == 2576
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.template.yaml").read_text())
    assert secret["stringData"]["HAI_HL7_BRIDGE_DATABASE_URL"] == ""


def test_compose_and_kubernetes_run_three_broker_nodes_and_a_standby_database():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
    assert all(services[n]["environment"]["RABBITMQ_ERLANG_COOKIE"] for n in nodes)
    for name in SERVICES:
        env = services[name]["environment"]
        urls = broker_urls(env["HAI_AMQP_URL"])
        assert [u.split("@")[1].split(":")[0] for u in urls] == nodes
        db = env[f"HAI_{name.upper()}_DATABASE_URL"]
        assert "host=postgres:5432&host=postgres-standby:5432" in db
        assert "target_session_attrs=read-write" in db
    assert "synchronous_standby_names=*" in services["postgres"]["command"]
    assert services["postgres-standby"]["command"] == ["bash", "/standby.sh"]
    assert "pg_basebackup" in (DEPLOY / "postgres" / "standby.sh").read_text()
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert all(f"rabbit@{n}" in conf for n in nodes)
    rabbit, pg = yaml.safe_load_all((DEPLOY / "k8s" / "data.yaml").read_text())
    assert rabbit["kind"] == "RabbitmqCluster" and rabbit["spec"]["replicas"] == 3
    assert pg["spec"]["instances"] == 2 and pg["spec"]["minSyncReplicas"] == 1
