"""Alerts' FHIR R4 read API (CONTRACT.md, FHIR R4 read API): each alert about a patient as a
`Flag`, each page as a `Communication`.

`flag_resource` and `communication_resource` are the pure mappings; the routes only parse the
search, run one keyset query (as the JSON API's lists) and audit the patients read. An alert
about no patient (`system_stale`) is no Flag: a Flag's subject cannot be a pump or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from sqlalchemy import Select, select

from services.alerts.models import Alert, Notification
from shared.audit import ReadAuditDep
from shared.contracts.vocabulary import AlertKind, AlertStatus, NotificationStatus, Severity
from shared.errors import NotFound
from shared.fhir import (
    FhirApi,
    FhirPageDep,
    FhirResponse,
    SearchParam,
    Systems,
    coding,
    concept,
    fhir_id,
    instant,
    reference_key,
    resource_key,
    searchset,
    token_codes,
)
from shared.pagination import paginate
from shared.web import RuntimeDep, UowDep

api = FhirApi("alerts", "HAI alerts")

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
# each kind's Flag category (HL7 flag-category: admin, clinical, drug, safety, ...)
CATEGORY_OF_KIND: dict[str, str] = {
    AlertKind.REFILL_DUE_SOON: "admin", AlertKind.REFILL_OVERDUE: "clinical",
    AlertKind.RESERVOIR_NEAR_EMPTY: "clinical", AlertKind.FLOW_ABNORMAL: "clinical",
    AlertKind.DELIVERY_LATE: "drug", AlertKind.DELIVERY_REJECTED: "drug",
    AlertKind.ORDER_REFUSED: "drug", AlertKind.DEVICE_RECALLED_IMPLANTED: "safety",
}
CATEGORY_DISPLAY = {"admin": "Administrative", "clinical": "Clinical", "drug": "Drug",
                    "safety": "Safety"}
FLAG_STATUSES = ("active", "inactive")
PRIORITY_OF_SEVERITY: dict[str, str] = {Severity.CRITICAL: "stat", Severity.WARNING: "urgent",
                        Severity.INFO: "routine"}
# a page sent is completed, one given up stopped, any other still under way
COMMUNICATION_STATUS: dict[str, str] = {
    NotificationStatus.SENT: "completed", NotificationStatus.DELIVERED: "completed",
    NotificationStatus.SEEN: "completed", NotificationStatus.ACKNOWLEDGED: "completed",
    NotificationStatus.FAILED: "stopped",
    NotificationStatus.CANCELLED: "stopped"}


def flag_status(alert: Alert) -> str:
    """active while open (firing or acknowledged), inactive once resolved."""
    return "inactive" if alert.status == AlertStatus.RESOLVED else "active"


def flag_resource(alert: Alert, systems: Systems) -> dict[str, Any]:
    """An alert about a patient: its kind and summary, category, period, author, severity."""
    if alert.patient_mrn is None:
        raise ValueError("an alert about no patient is no Flag")
    extensions: list[dict[str, Any]] = [
        {"url": systems.extension("alert-severity"),
         "valueCoding": coding(systems.code_system("alert-severity"), alert.severity)},
        {"url": systems.extension("alert-status"),
         "valueCoding": coding(systems.code_system("alert-status"), alert.status)},
    ]
    if alert.pump_serial:
        extensions.append({"url": systems.extension("pump"),
                           "valueReference": systems.device_ref(alert.pump_serial)})
    period: dict[str, Any] = {"start": instant(alert.first_raised_at)}
    if alert.resolved_at is not None:
        period["end"] = instant(alert.resolved_at)
    resource: dict[str, Any] = {
        "resourceType": "Flag", "id": fhir_id(alert.id),
        "extension": extensions,
        "identifier": [{"system": systems.identifier_system("alert"), "value": alert.id}],
        "status": flag_status(alert),
    }
    category = CATEGORY_OF_KIND.get(alert.kind)
    if category is not None:
        resource["category"] = [concept(coding(FLAG_CATEGORY, category,
                                               CATEGORY_DISPLAY[category]))]
    resource.update({
        "code": concept(coding(systems.code_system("alert-kind"), alert.kind),
                        text=alert.summary),
        "subject": systems.patient_ref(alert.patient_mrn, alert.center),
        "period": period,
        "author": {"type": "Device", "display": "HAI alerts service (pump safety rules)"},
    })
    return resource


def communication_resource(n: Notification, alert: Alert, systems: Systems) -> dict[str, Any]:
    """A page to one on-call member: when it went, to whom, by which channel, about which alert."""
    resource: dict[str, Any] = {
        "resourceType": "Communication", "id": fhir_id(n.id),
        "identifier": [{"system": systems.identifier_system("page"), "value": n.id}],
        "status": COMMUNICATION_STATUS.get(n.status, "in-progress"),
    }
    if n.status == NotificationStatus.FAILED and n.error:
        resource["statusReason"] = {"text": f"not delivered after {n.attempts} attempts"}
    resource["category"] = [concept(coding(COMMUNICATION_CATEGORY, "alert", "Alert"))]
    resource["priority"] = PRIORITY_OF_SEVERITY.get(alert.severity, "routine")
    resource["medium"] = [concept(coding(systems.code_system("page-channel"), n.channel))]
    if alert.patient_mrn:
        resource["subject"] = systems.patient_ref(alert.patient_mrn, alert.center)
        resource["about"] = [{"reference": systems.url("alerts", "Flag", alert.id),
                              "type": "Flag"}]
    if n.sent_at is not None:
        resource["sent"] = instant(n.sent_at)
    resource["recipient"] = [{"display": f"{n.recipient} (on-call level {n.level})"}]
    resource["payload"] = [{"contentString": alert.summary}]
    return resource


def _flags_only() -> Any:
    return Alert.patient_mrn.is_not(None)


@api.read("Flag")
def read_flag(resource_id: str, uow: UowDep, audit: ReadAuditDep,
              runtime: RuntimeDep) -> FhirResponse:
    """An alert about a patient (the read is audited)."""
    alert = uow.session.get(Alert, resource_key(resource_id, "Flag"))
    if alert is None or alert.patient_mrn is None:
        raise NotFound(f"no Flag {resource_id}")
    audit.record([(alert.patient_mrn, alert.id)])
    return FhirResponse(flag_resource(alert, Systems.from_settings(runtime.settings)))


@api.search("Flag", [
    SearchParam("patient", "reference", "the patient (`Patient/MRN` or the MRN)"),
    SearchParam("status", "token", "active (open: firing or acknowledged) | inactive "
                                   "(resolved); comma: any of them"),
], documentation="Alerts about patients, by when they were first raised.")
def search_flags(request: Request, uow: UowDep, audit: ReadAuditDep, runtime: RuntimeDep,
                 page: FhirPageDep, patient: str | None = None,
                 status: str | None = None) -> FhirResponse:
    """Alerts about patients matching every parameter given, oldest first."""
    stmt: Select[Any] = select(Alert).where(_flags_only())
    if patient is not None:
        stmt = stmt.where(Alert.patient_mrn == reference_key(patient, "Patient", "patient"))
    codes = token_codes(status, FLAG_STATUSES, "status")
    if codes is not None and set(codes) != set(FLAG_STATUSES):
        stmt = stmt.where(Alert.status == AlertStatus.RESOLVED.value if "inactive" in codes
                          else Alert.status != AlertStatus.RESOLVED.value)
    found = paginate(uow.session, stmt, keys=[Alert.first_raised_at, Alert.id], params=page,
                     to_item=lambda a: a)
    audit.record((a.patient_mrn, a.id) for a in found.items)
    systems = Systems.from_settings(runtime.settings)
    return searchset(request, [flag_resource(a, systems) for a in found.items], found.next_cursor)


@api.read("Communication")
def read_communication(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                       runtime: RuntimeDep) -> FhirResponse:
    """A page (the read of its patient, if any, is audited)."""
    n = uow.session.get(Notification, resource_key(resource_id, "Communication"))
    if n is None:
        raise NotFound(f"no Communication {resource_id}")
    alert = uow.session.get(Alert, n.alert_id)
    assert alert is not None  # a foreign key
    audit.record([(alert.patient_mrn, n.id)])
    return FhirResponse(communication_resource(n, alert, Systems.from_settings(runtime.settings)))


@api.search("Communication", [
    SearchParam("patient", "reference", "the patient of the alert paged (`Patient/MRN` or the "
                                        "MRN)"),
], documentation="Pages to on-call members, by when they were planned.")
def search_communications(request: Request, uow: UowDep, audit: ReadAuditDep,
                          runtime: RuntimeDep, page: FhirPageDep,
                          patient: str | None = None) -> FhirResponse:
    """Pages matching every parameter given, oldest first."""
    stmt: Select[Any] = select(Notification)
    if patient is not None:
        stmt = stmt.join(Alert, Alert.id == Notification.alert_id).where(
            Alert.patient_mrn == reference_key(patient, "Patient", "patient"))
    found = paginate(uow.session, stmt, keys=[Notification.created_at, Notification.id],
                     params=page, to_item=lambda n: n)
    alerts = _alerts(uow, [n.alert_id for n in found.items])
    audit.record((alerts[n.alert_id].patient_mrn, n.id) for n in found.items)
    systems = Systems.from_settings(runtime.settings)
    return searchset(request, [communication_resource(n, alerts[n.alert_id], systems)
                               for n in found.items], found.next_cursor)


def _alerts(uow: UowDep, ids: Sequence[str]) -> dict[str, Alert]:
    if not ids:
        return {}
    return {a.id: a for a in uow.session.scalars(select(Alert).where(Alert.id.in_(set(ids))))}
