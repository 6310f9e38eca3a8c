"""`hai inventory ...`: import a received shipment of pumps through the running service's API.

The import talks HTTP with a token, like any integrator, so it works against production too.
A bad row never stops the others; a serial the service already knows (409) counts as already
known, so running the same file twice imports nothing new.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.inventory.settings import get_settings
from shared.auth import ALL_CENTERS, mint_token

app = typer.Typer(help="Inventory: pumps and their stock.", no_args_is_help=True,
                  add_completion=False)
err_console = Console(stderr=True)

FIELD_COLUMNS = ("serial_number", "model_code", "lot_number", "expiry_date")
OPTIONAL_COLUMNS = ("labeled_flow_ml_per_day", "location")
TRANSPORT_ATTEMPTS = 3


@dataclass(frozen=True)
class ShipmentRow:
    """One CSV row: its line number, what identifies it, and the registration body."""

    line: int
    label: str
    body: dict[str, Any]


@dataclass
class ImportSummary:
    """What an import did: imported, already known, rejected (with line numbers and reasons)."""

    imported: list[str] = field(default_factory=list)
    already_known: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


class ImportAborted(Exception):
    """Every further row would fail the same way (bad token, wrong role)."""

    def __init__(self, reason: str, summary: ImportSummary) -> None:
        super().__init__(reason)
        self.summary = summary


class ShipmentFileError(ValueError):
    """The file is not a shipment CSV we can read."""


def read_shipment(path: Path) -> list[ShipmentRow]:
    """The rows of a shipment CSV (`udi`, or the four fields; optional flow and location)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
        if "udi" not in header and not all(c in header for c in FIELD_COLUMNS):
            raise ShipmentFileError(
                f"{path}: the header needs a `udi` column or all of {', '.join(FIELD_COLUMNS)}")
        reader.fieldnames = header
        rows: list[ShipmentRow] = []
        for record in reader:
            line_of_row = reader.line_num  # the record's (last) line in the file
            values = {k: (v or "").strip() for k, v in record.items() if k}
            if not any(values.values()):
                continue
            body: dict[str, Any]
            if values.get("udi"):
                body = {"udi": values["udi"]}
                label = values["udi"].replace("\x1d", "<GS>")
            else:
                body = {c: values[c] for c in FIELD_COLUMNS if values.get(c)}
                label = values.get("serial_number") or "?"
            body.update({c: values[c] for c in OPTIONAL_COLUMNS if values.get(c)})
            rows.append(ShipmentRow(line=line_of_row, label=label, body=body))
        return rows


def import_rows(client: httpx.Client, rows: Iterable[ShipmentRow],
                on_row: Callable[[ShipmentRow], None] = lambda _: None) -> ImportSummary:
    """POST each row to /v1/pumps and sort the answers; a bad row never stops the others."""
    summary = ImportSummary()
    for row in rows:
        try:
            response = _post(client, row.body)
        except httpx.TransportError as exc:
            summary.rejected.append((row.line, row.label, f"service unreachable: {exc}"))
            on_row(row)
            continue
        status = response.status_code
        if status == 201:
            summary.imported.append(response.json()["serial_number"])
        elif status == 409:
            summary.already_known.append(row.label)
        elif status in (401, 403):
            raise ImportAborted(f"HTTP {status}: {_detail(response)}", summary)
        else:
            summary.rejected.append((row.line, row.label, f"HTTP {status}: {_detail(response)}"))
        on_row(row)
    return summary


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    for attempt in range(1, TRANSPORT_ATTEMPTS + 1):
        try:
            return client.post("/v1/pumps", json=body)
        except httpx.TransportError:
            if attempt == TRANSPORT_ATTEMPTS:
                raise
            time.sleep(0.5 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _detail(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if errors:
        return "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
    return str(problem.get("detail", problem)) if isinstance(problem, dict) else str(problem)


def _token(explicit: str | None) -> str:
    if explicit:
        return explicit
    settings = get_settings()
    # the import registers into the consortium's stock (pumps of no centre): every centre
    return mint_token("import", ["biomed"], secret=settings.jwt_secret, ttl=timedelta(hours=1),
                      centers=[ALL_CENTERS])


def print_summary(summary: ImportSummary, console: Console) -> None:
    """The end-of-run summary: counts, then each rejected row with its line and reason."""
    console.print(f"[green]imported[/green] {len(summary.imported)} · "
                  f"[yellow]already known[/yellow] {len(summary.already_known)} · "
                  f"[red]rejected[/red] {len(summary.rejected)}")
    if summary.rejected:
        table = Table(title="rejected rows")
        table.add_column("line", justify="right")
        table.add_column("pump")
        table.add_column("reason")
        for line, label, reason in summary.rejected:
            table.add_row(str(line), label, reason)
        console.print(table)


@app.callback()
def _group() -> None:
    """Inventory tools."""


@app.command("import")
def import_shipment(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV: udi, or serial_number,model_code,lot_number,"
                                              "expiry_date; optional labeled_flow_ml_per_day,location")],
    url: Annotated[str | None, typer.Option(help="inventory API; default HAI_INVENTORY_URL")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="HAI_TOKEN", help="bearer token (biomed); default: a dev token from HAI_JWT_SECRET")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 10.0,
) -> None:
    """Register a received shipment of pumps from a CSV file, row by row."""
    try:
        rows = read_shipment(file)
    except (ShipmentFileError, UnicodeDecodeError, csv.Error) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    base_url = (url or os.environ.get("HAI_INVENTORY_URL") or get_settings().inventory_url).rstrip("/")
    headers = {"Authorization": f"Bearer {_token(token)}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        try:
            client.get("/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            err_console.print(f"[red]inventory service not reachable at {base_url}: {exc}[/red]")
            raise typer.Exit(2) from exc
        with Progress(TextColumn("[bold]importing[/bold] {task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), console=err_console) as progress:
            task = progress.add_task(file.name, total=len(rows))
            try:
                summary = import_rows(client, rows, on_row=lambda _: progress.advance(task))
            except ImportAborted as exc:
                print_summary(exc.summary, Console())
                err_console.print(f"[red]import stopped: {exc}[/red]")
                raise typer.Exit(2) from exc
    print_summary(summary, Console())
    if summary.rejected:
        raise typer.Exit(1)
