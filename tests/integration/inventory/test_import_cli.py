"""`hai inventory import` against a real `hai serve inventory` process on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.inventory.udi import GS
from tests.helpers import auth
from tests.integration.inventory.conftest import HAI, ROOT, ServiceProcess

SHIPMENT = [
    "udi,serial_number,model_code,lot_number,expiry_date,labeled_flow_ml_per_day,location",
    "(01)00812345000016(17)281231(10)LOT-A(21)IMP-001,,,,,,dock",               # 2 imported
    f"0100812345000023172906301" f"0LOT-B{GS}21IMP-002,,,,,1.05,",             # 3 imported
    ",IMP-003,DEMO-SYNCHROMED-II,LOT-C,2029-01-31,0.95,shelf 1",                # 4 imported
    "(01)00812345000017(17)281231(10)LOT-A(21)IMP-004,,,,,,",                   # 5 bad check digit
    ",IMP-005,NO-SUCH-MODEL,LOT-C,2029-01-31,,",                                # 6 unknown model
    "(01)00812345000016(17)281231(10)LOT-A(21)IMP-001,,,,,,",                   # 7 already known
    ",,,,,,",                                                                   # 8 empty: skipped
    ",IMP-006,DEMO-INTERA-3000,LOT-C,2029-01-31,fast,",                         # 9 flow not a number
    ",IMP-007,DEMO-INTERA-3000,LOT-C,2029-02-28,,",                             # 10 imported
]


@pytest.fixture
def service(pg_database: Callable[[str], str]) -> Iterator[ServiceProcess]:
    process = ServiceProcess({"HAI_INVENTORY_DATABASE_URL": pg_database("inventory_cli"),
                              "HAI_AMQP_URL": "", "HAI_ENV": "development"})
    yield process
    process.stop()


def run_import(path: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HAI, "inventory", "import", str(path), "--url", url], cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **env}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_a_shipment_twice(service: ServiceProcess, tmp_path: Path) -> None:
    csv_file = tmp_path / "shipment.csv"
    csv_file.write_text("\n".join(SHIPMENT) + "\n", encoding="utf-8")

    first = run_import(csv_file, service.url)
    assert first.returncode == 1, first.stderr  # some rows were rejected
    assert "imported 4 · already known 1 · rejected 3" in first.stdout
    rejected_lines = [line.split("│")[1].strip() for line in first.stdout.splitlines()
                      if line.count("│") >= 3 and line.split("│")[1].strip().isdigit()]
    assert rejected_lines == ["5", "6", "9"]
    assert "check digit" in first.stdout and "model_code" in first.stdout
    assert "labeled_flow_ml_per_day" in first.stdout
    assert "importing" in first.stderr  # the progress bar

    headers = auth("nurse")
    pumps = httpx.get(f"{service.url}/v1/pumps", params={"limit": 50}, headers=headers).json()
    assert sorted(p["serial_number"] for p in pumps["items"]) == [
        "IMP-001", "IMP-002", "IMP-003", "IMP-007"]
    imp2 = httpx.get(f"{service.url}/v1/pumps/IMP-002", headers=headers).json()
    assert (imp2["model_code"], imp2["labeled_flow_ml_per_day"]) == ("DEMO-CODMAN-3000", 1.05)

    second = run_import(csv_file, service.url)
    assert "imported 0 · already known 5 · rejected 3" in second.stdout
    again = httpx.get(f"{service.url}/v1/pumps", params={"limit": 50}, headers=headers).json()
    assert len(again["items"]) == 4


def test_a_token_without_the_role_stops_the_import(service: ServiceProcess, tmp_path: Path) -> None:
    csv_file = tmp_path / "shipment.csv"
    csv_file.write_text("\n".join(SHIPMENT[:3]) + "\n", encoding="utf-8")
    nurse_token = auth("nurse")["Authorization"].removeprefix("Bearer ")
    result = run_import(csv_file, service.url, HAI_TOKEN=nurse_token)
    assert result.returncode == 2
    assert "HTTP 403" in result.stderr


def test_an_unreachable_service_is_reported(tmp_path: Path) -> None:
    csv_file = tmp_path / "shipment.csv"
    csv_file.write_text("\n".join(SHIPMENT[:2]) + "\n", encoding="utf-8")
    result = run_import(csv_file, "http://127.0.0.1:9")
    assert result.returncode == 2 and "not reachable" in result.stderr
