"""Reading a shipment CSV, and sorting the service's answers (no service: an httpx mock transport)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.inventory.cli import ShipmentFileError, ShipmentRow, import_rows, read_shipment


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_carry_their_line_numbers_and_only_given_values(tmp_path: Path) -> None:
    rows = read_shipment(write(tmp_path, (
        "Serial_Number,model_code,lot_number,expiry_date,location\n"
        "S1,M,L,2028-01-01,\n"
        "\n"
        "S2,M,L,2028-01-01,shelf\n")))
    assert [(r.line, r.label) for r in rows] == [(2, "S1"), (4, "S2")]
    assert rows[0].body == {"serial_number": "S1", "model_code": "M", "lot_number": "L",
                            "expiry_date": "2028-01-01"}
    assert rows[1].body["location"] == "shelf"


def test_a_udi_row_sends_only_the_udi_and_the_optional_columns(tmp_path: Path) -> None:
    [row] = read_shipment(write(tmp_path, "udi,labeled_flow_ml_per_day\n(01)1(21)2,1.1\n"))
    assert row.body == {"udi": "(01)1(21)2", "labeled_flow_ml_per_day": "1.1"}


def test_a_header_without_udi_or_fields_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ShipmentFileError):
        read_shipment(write(tmp_path, "serial_number,model_code\nS1,M\n"))


def test_answers_are_sorted_and_a_bad_row_does_not_stop_the_others() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        serial = request.read().decode()
        if "BAD" in serial:
            return httpx.Response(422, json={"detail": "x", "errors": [
                {"field": "expiry_date", "message": "not a date"}]})
        if "OLD" in serial:
            return httpx.Response(409, json={"detail": "known"})
        return httpx.Response(201, json={"serial_number": "NEW"})

    rows = [ShipmentRow(2, "BAD", {"serial_number": "BAD"}),
            ShipmentRow(3, "OLD", {"serial_number": "OLD"}),
            ShipmentRow(4, "NEW", {"serial_number": "NEW"})]
    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://inv") as client:
        summary = import_rows(client, rows)
    assert summary.imported == ["NEW"] and summary.already_known == ["OLD"]
    assert summary.rejected == [(2, "BAD", "HTTP 422: expiry_date: not a date")]
