"""Alerts hearing of a refill entered in error (the flow alert its reading raised is withdrawn,
with the reason on the timeline) and of a pharmacy order refused (a critical alert for the
oncologist, cleared when the order goes). SQLite, in-process bus, moved clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.alerts import rules
from shared.clock import MovableClock
from shared.contracts.scheduling import OrderRefusedData, RefillVoidedData
from shared.contracts.vocabulary import AlertKind
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, appointment_scheduled, flow_recorded
from tests.helpers import Harness, emit, start_service
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import NURSE


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def h(tmp_path: Path, bus: InProcessBus) -> Iterator[Harness]:
    harness = start_service("alerts", make_settings(tmp_path), clock=MovableClock(T0), bus=bus)
    yield harness
    harness.runtime.engine.dispose()


def voided(refill_id: str, serial: str = "SN1001", **extra: Any) -> dict[str, Any]:
    return {"refill_id": refill_id, "pump_serial": serial, "patient_mrn": "MRN-1",
            "center": "north", "reason": "residual of another pump", "voided_by": "nurse-nina",
            "voided_at": T0.isoformat(), **extra}


def reading(refill_id: str, deviation_pct: float, serial: str = "SN1001") -> dict[str, Any]:
    return {**flow_recorded(serial, deviation_pct), "refill_id": refill_id}


def alert_of(h: Harness, **params: Any) -> dict[str, Any]:
    r = h.client.get("/v1/alerts", params=params, headers=NURSE)
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    detail = h.client.get(f"/v1/alerts/{item['id']}", headers=NURSE).json()
    return dict(detail)


def test_the_voided_reading_s_flow_alert_resolves_with_the_reason(h: Harness,
                                                                  bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, reading("rf-1", 40))
    emit(h, bus, EventType.FLOW_RECORDED, reading("rf-other", 40, serial="SN2002"))
    alert = alert_of(h, pump_serial="SN1001")
    assert alert["status"] == "firing" and alert["details"]["refill_ids"] == ["rf-1"]
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-2"))  # another refill: nothing
    assert alert_of(h, pump_serial="SN1001")["status"] == "firing"
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-1"))
    alert = alert_of(h, pump_serial="SN1001")
    assert alert["status"] == "resolved"
    assert alert["resolution"] == ("refill rf-1 entered in error by nurse-nina: "
                                   "residual of another pump")
    last = alert["timeline"][-1]
    assert last["action"] == "auto_resolved" and "residual of another pump" in str(last["details"])
    assert alert_of(h, pump_serial="SN2002")["status"] == "firing"  # another pump's: untouched
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-1"))  # told twice: nothing more
    assert alert_of(h, pump_serial="SN1001")["timeline"] == alert["timeline"]


def test_an_alert_other_readings_repeated_stays_open_without_the_voided_one(
        h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, reading("rf-1", 20))
    emit(h, bus, EventType.FLOW_RECORDED, reading("rf-2", 40))
    alert = alert_of(h)
    assert alert["details"]["refill_ids"] == ["rf-1", "rf-2"]
    assert alert["details"]["refill_id"] == "rf-2"
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-2"))
    alert = alert_of(h)
    assert alert["status"] == "firing"
    assert alert["details"]["refill_ids"] == ["rf-1"] and alert["details"]["refill_id"] == "rf-1"
    last = alert["timeline"][-1]
    assert last["action"] == "reading_withdrawn" and last["details"]["refill_id"] == "rf-2"
    assert "residual of another pump" in last["details"]["resolution"]


def test_an_alert_raised_before_refill_ids_is_withdrawn_by_its_refill_id(
        h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, reading("rf-1", 40))
    from services.alerts.models import Alert

    with h.runtime.uow_factory() as uow:  # as an older release stored it
        row = uow.session.query(Alert).one()
        row.details = {k: v for k, v in row.details.items() if k != "refill_ids"}
        uow.commit()
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-1"))
    assert alert_of(h)["status"] == "resolved"


def test_the_cancelled_appointment_s_alerts_resolve(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.REFILL_DUE_SOON, appointment_scheduled("appt-9"))
    emit(h, bus, EventType.REFILL_VOIDED, voided("rf-1", cancelled_appointment_id="appt-9"))
    alert = alert_of(h)
    assert alert["kind"] == "refill_due_soon" and alert["status"] == "resolved"


def refusal(appt_id: str = "appt-1") -> dict[str, Any]:
    return OrderRefusedData(
        appointment_id=appt_id, therapy_id="th-1", patient_mrn="MRN-1", pump_serial="SN1001",
        center="north", fill_type="chemo", due_at=T0, field="fudr_mg_per_kg_day",
        reason="2.1e+303 mg/kg/day is outside the hard limit of 0.05–1 mg/kg/day, which no "
               "override passes", refused_at=T0).model_dump(mode="json")


def test_a_refused_order_is_a_critical_alert_cleared_when_the_order_goes(
        h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.ORDER_REFUSED, refusal())
    alert = alert_of(h)
    assert (alert["kind"], alert["severity"], alert["status"]) == ("order_refused", "critical",
                                                                   "firing")
    assert "hard limit" in alert["summary"] and "SN1001" in alert["summary"]
    assert alert["details"]["field"] == "fudr_mg_per_kg_day"
    emit(h, bus, EventType.DELIVERY_UPDATED, {
        "id": "ord-1", "appointment_id": "appt-1", "patient_mrn": "MRN-1",
        "pump_serial": "SN1001", "center": "north", "needed_by": T0.isoformat(),
        "status": "requested"})
    alert = alert_of(h)
    assert alert["status"] == "resolved" and alert["resolution"] == "order ord-1 sent to the pharmacy"


def test_rules_of_the_two_new_facts() -> None:
    result = rules.refill_voided(RefillVoidedData.model_validate(voided("rf-1")))
    assert not result.raise_
    (flow,) = result.clear
    assert (flow.refill_id, flow.pump_serial, flow.kinds) == ("rf-1", "SN1001", ("flow_abnormal",))
    (fact,) = rules.order_refused(OrderRefusedData.model_validate(refusal("a7"))).raise_
    assert fact.dedup_key == "order_refused:a7" and fact.severity == "critical"
    assert AlertKind("order_refused") is AlertKind.ORDER_REFUSED
