"""The `hai` command: up, serve, worker, migrate, backup, restore, token, dlq, hl7-bridge
(CONTRACT.md, Running).

The composition root: it knows every service (services/registry.py) and reads the system's
settings (services/settings.py, every service's section); shared/ knows none of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from services.registry import APPS, DEFAULT_PORTS, SERVICES, app_module, cli_module
from services.settings import HaiSettings, get_settings
from shared.auth import CENTER_CODE_MAX_LEN, ROLES, mint_token
from shared.logging import configure_logging
from shared.migrations import make_revision, upgrade
from shared.runtime import lower_cpu_priority, settle_heap

app = typer.Typer(help="HAI pump safety services.", no_args_is_help=True, add_completion=False)
dlq_app = typer.Typer(help="Inspect and re-drive dead-lettered messages.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
console = Console(stderr=True)
log = structlog.get_logger(__name__)


def service_module(name: str) -> Any:
    """The `services.<name>.app` module (bootstrap and create_app)."""
    if name not in APPS:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(APPS)}")
    return app_module(name)


def _mount_service_commands() -> None:
    """Each service may add its own sub-command group (`services/<name>/cli.py`, `app`)."""
    for name in SERVICES:
        module = cli_module(name)
        if module is not None:
            app.add_typer(module.app, name=name)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `hai` (several run in one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(asgi: Any, port: int, host: str) -> uvicorn.Config:
    return uvicorn.Config(asgi, host=host, port=port, log_config=None, access_log=False,
                          lifespan="off", timeout_keep_alive=30)


def _loop_factory() -> Any:
    """uvloop when installed (it is, with uvicorn[standard]), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_servers(servers: list[_Server], on_stop: list[Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for s in servers:
                s.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    finally:
        for fn in on_stop:
            fn()


@app.command()
def migrate(service: Annotated[str, typer.Argument(help="inventory | scheduling | alerts")]) -> None:
    """Upgrade a service's schema to the latest revision (Alembic)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, service)
    if service not in SERVICES:
        raise typer.BadParameter(f"one of {', '.join(SERVICES)}")
    upgrade(service, settings.database_url(service))
    console.print(f"[green]{service}[/green] schema is up to date")


@app.command("make-migration", hidden=True)
def make_migration(service: str, message: Annotated[str, typer.Option("-m")]) -> None:
    """Autogenerate a migration from the models (developers only)."""
    settings = get_settings()
    upgrade(service, settings.database_url(service))
    make_revision(service, settings.database_url(service), message)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="inventory | scheduling | alerts | dashboard")],
    port: Annotated[int | None, typer.Option(help="default: the service's port")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only")] = False,
) -> None:
    """Run one service's API and, unless --no-worker, its background work."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, service)
    module = service_module(service)
    port = port or DEFAULT_PORTS[service]
    on_stop: list[Any] = []
    if service == "dashboard":
        asgi = module.create_app(settings)
    else:
        upgrade(service, settings.database_url(service))
        runtime = module.bootstrap(settings)
        asgi = module.create_app(runtime)
        if not no_worker:
            on_stop.append(_start_worker(module, runtime).stop)
    log.info("serve.start", service=service, port=port, worker=not no_worker)
    settle_heap()
    _run_servers([_Server(_uvicorn_config(asgi, port, host))], on_stop)


def _start_worker(module: Any, runtime: Any) -> Any:
    from shared.runtime import Worker

    worker = Worker(runtime)
    threading.Thread(target=worker.start, name=f"{runtime.name}-worker-start", daemon=True).start()
    return worker


@app.command()
def worker(
    service: Annotated[str, typer.Argument(help="inventory | scheduling | alerts")],
    metrics_port: Annotated[int | None, typer.Option(
        help="serve the worker's Prometheus metrics (queue depths, consumer outcomes, job "
             "heartbeats, page failures) on this port")] = None,
    queue: Annotated[list[str] | None, typer.Option(
        help="consume only this queue of the service (repeatable; default: all of them), e.g. "
             "`hai worker alerts --queue alerts.flow`: abnormal flows and their pages in a "
             "process of their own, beside workers of `--queue alerts.events`")] = None,
    nice: Annotated[int, typer.Option(
        min=0, max=19,
        help="lower this worker's CPU priority by this much (as nice(1) does), e.g. "
             "`--nice 10` for the workers of a bulk queue: when the machine is short of CPU, "
             "the flow worker and the APIs run first (a worker leading its own session, as "
             "honcho starts each, lowers its session's autogroup by as much: under Linux's "
             "autogroups a nice weighs only against the processes of one session)")] = 0,
    relay: Annotated[bool, typer.Option(
        "--relay/--no-relay",
        help="run the service's outbox relay here too (default); `--no-relay` leaves it to "
             "the service's other workers, e.g. `hai worker alerts --queue alerts.flow "
             "--no-relay`: the process that pages an abnormal flow does nothing else")] = True,
    consumers: Annotated[bool, typer.Option(
        "--consumers/--no-consumers",
        help="consume the service's queues here (default); `--no-consumers` with `--no-jobs`: "
             "a process that only relays the outbox")] = True,
    jobs: Annotated[bool, typer.Option(
        "--jobs/--no-jobs",
        help="run the service's scheduled jobs here (default), e.g. `hai worker scheduling "
             "--nice 10 --no-relay`: the sweep at a lower CPU priority, beside a relay of "
             "`--no-jobs --no-consumers` that sends an abnormal flow's reading at once")] = True,
) -> None:
    """Run a service's background work alone: outbox relay, consumers, scheduled jobs."""
    from shared.runtime import Worker

    autogroup_nice = lower_cpu_priority(nice)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, service)
    if nice:
        log.info("worker.cpu_priority_lowered", nice=nice, autogroup_nice=autogroup_nice)
    if service not in SERVICES:
        raise typer.BadParameter(f"one of {', '.join(SERVICES)}")
    if not (relay or consumers or jobs):
        raise typer.BadParameter("a worker with --no-relay, --no-consumers and --no-jobs would "
                                 "do nothing", param_hint="--no-relay")
    upgrade(service, settings.database_url(service))
    runtime = service_module(service).bootstrap(settings)
    try:
        work = Worker(runtime, queues=queue or None, relay=relay, consumers=consumers,
                      jobs=jobs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue") from exc
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=runtime.registry)
    settle_heap()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    work.start()
    log.info("worker.running", service=service)
    stopped.wait()
    work.stop()


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="seed demo pumps, patients, on-call")] = False,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """The whole system in one process: three services, their work, and the dashboard."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "hai-up")
    servers: list[_Server] = []
    on_stop: list[Any] = []
    for service in SERVICES:
        upgrade(service, settings.database_url(service))
        module = service_module(service)
        runtime = module.bootstrap(settings)
        on_stop.append(_start_worker(module, runtime).stop)
        servers.append(_Server(_uvicorn_config(module.create_app(runtime),
                                               DEFAULT_PORTS[service], host)))
    if settings.hl7_enabled:
        on_stop.append(_start_hl7_bridge(settings))
    dashboard = service_module("dashboard").create_app(settings)
    servers.append(_Server(_uvicorn_config(dashboard, DEFAULT_PORTS["dashboard"], host)))
    bus = "RabbitMQ" if settings.amqp_url else "in-process bus"
    console.print(f"[bold]HAI[/bold] up on {bus}: dashboard http://{host}:8000 · inventory :8001 "
                  "· scheduling :8002 · alerts :8003 (Ctrl-C stops)")
    if demo:
        threading.Thread(target=_seed_demo, args=(settings,), daemon=True).start()
    settle_heap()
    _run_servers(servers, on_stop)


@app.command("hl7-bridge")
def hl7_bridge(
    if_enabled: Annotated[bool, typer.Option(
        "--if-enabled", help="only when HAI_HL7_ENABLED is set; otherwise wait, doing nothing")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve the bridge's Prometheus metrics (orders' outcomes, the pharmacy's messages "
             "by ACK, outbox lag) on this port")] = None,
) -> None:
    """The HL7 v2 pharmacy bridge: pharmacy.orders as RDE^O11 over MLLP, answers as statuses."""
    from services.hl7_bridge.bridge import run

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "hl7_bridge")
    run(settings, if_enabled=if_enabled, metrics_port=metrics_port)


def _start_hl7_bridge(settings: HaiSettings) -> Any:
    """`hai up` with HAI_HL7_ENABLED: the bridge beside the services (its stop, for on_stop)."""
    from services.hl7_bridge.bridge import NAME, Bridge, bootstrap

    upgrade(NAME, settings.database_url(NAME))
    bridge = Bridge(bootstrap(settings))
    threading.Thread(target=bridge.start, name="hl7-bridge-start", daemon=True).start()
    return bridge.stop


def _seed_demo(settings: HaiSettings) -> None:
    try:
        from services.dashboard.demo import seed
    except ModuleNotFoundError:
        console.print("[yellow]no demo data available[/yellow]")
        return
    try:
        seed(settings, escalation_delay_seconds=settings.escalation_delay_seconds)
        console.print("[green]demo data seeded[/green]")
    except Exception as exc:  # noqa: BLE001 - the system keeps running without demo data
        console.print(f"[red]demo seeding failed: {exc}[/red]")


@app.command()
def token(
    sub: Annotated[str, typer.Option("--sub", help="the user name (token subject)")],
    role: Annotated[list[str], typer.Option("--role", help=f"one of {', '.join(ROLES)}")],
    hours: Annotated[float, typer.Option(help="validity")] = 12.0,
    center: Annotated[list[str] | None, typer.Option(
        "--center", help="a centre code the token may see (repeat for several; `*` for every "
                         "centre); none: no `centers` claim (every centre, outside production)",
    )] = None,
) -> None:
    """Print a dev token signed with HAI_JWT_SECRET."""
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role(s) {unknown}; one of {', '.join(ROLES)}")
    bad = [c for c in center or [] if not c.strip() or len(c) > CENTER_CODE_MAX_LEN]
    if bad:
        raise typer.BadParameter(f"not a centre code: {bad}")
    settings = get_settings()
    typer.echo(mint_token(sub, role, secret=settings.jwt_secret, ttl=timedelta(hours=hours),
                          centers=list(center) if center else None))


def _database_url(service: str) -> str:
    if service not in SERVICES:
        raise typer.BadParameter(f"one of {', '.join(SERVICES)}")
    return get_settings().database_url(service)


@app.command()
def backup(
    service: Annotated[str, typer.Argument(help="inventory | scheduling | alerts")],
    to: Annotated[Path, typer.Option("--to", help="the backup file to write")],
) -> None:
    """Back up a service's database (pg_dump -Fc; SQLite: a consistent file copy)."""
    from shared.backup import backup as do_backup

    _backup_tool(do_backup, service, to, f"backed up to {to}")


@app.command()
def restore(
    service: Annotated[str, typer.Argument(help="inventory | scheduling | alerts")],
    source: Annotated[Path, typer.Option("--from", help="a file written by `hai backup`")],
) -> None:
    """Restore a service's database from a backup (pg_restore --clean --if-exists --no-owner,
    in one transaction); stop the service first, start it again after."""
    from shared.backup import restore as do_restore

    _backup_tool(do_restore, service, source, f"restored from {source}")


def _backup_tool(run: Any, service: str, path: Path, done: str) -> None:
    """Run pg_dump/pg_restore (shared/backup.py) on a service's database; its error exits 1."""
    from shared.backup import BackupError

    try:
        run(_database_url(service), path)
    except BackupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]{service}[/green] {done}")


def _dead_letters() -> Any:
    settings = get_settings()
    if not settings.amqp_url:
        console.print("[red]HAI_AMQP_URL is not set: dead letters live in RabbitMQ[/red]")
        raise typer.Exit(2)
    from shared.messaging.rabbit import DeadLetters, RabbitBus

    return DeadLetters(RabbitBus(settings.amqp_url).connect)


@dlq_app.command("list")
def dlq_list(
    queue: str,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Show the dead letters of a queue with their reasons (they stay in the DLQ)."""
    messages = _dead_letters().peek(queue, limit)
    rows = [{"message_id": m.message_id, "routing_key": m.routing_key,
             "reason": str(m.headers.get("x-hai-dlq-reason", m.headers.get("x-death", "")))}
            for m in messages]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"{queue}.dlq ({len(rows)} shown)")
    for col in ("message_id", "routing_key", "reason"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(str(row["message_id"]), row["routing_key"], row["reason"])
    Console(width=max(Console().width, 160)).print(table)


@dlq_app.command("replay")
def dlq_replay(queue: str, id: Annotated[str | None, typer.Option("--id")] = None) -> None:
    """Move dead letters back to their queue (all, or the one with --id) after a fix."""
    moved = _dead_letters().replay(queue, id)
    console.print(f"replayed {moved} message(s) to {queue}")


def main() -> None:
    """Entry point of the `hai` script."""
    _mount_service_commands()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
