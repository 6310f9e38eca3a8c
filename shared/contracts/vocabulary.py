"""The contract's words, each spelled once: event types and every status, kind and category
that crosses a service boundary (CONTRACT.md). Code compares, stores and sends these members,
never the bare strings; tests/unit/platform/test_contract_vocabulary.py fails on a spelling
outside shared/contracts/.

They are `StrEnum`s: a member is its string (in JSON, in a `String` column, in an f-string), so
the wire format and the database columns are what they were when they were plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every event type of CONTRACT.md, Events and Pharmacy queue (routing key = type).
    shared/contracts/registry.py gives each its payload model, exchange and publisher."""

    PUMP_REGISTERED = "hai.inventory.pump.registered"
    PUMP_IMPLANTED = "hai.inventory.pump.implanted"
    PUMP_EXPLANTED = "hai.inventory.pump.explanted"
    PUMP_STATUS_CHANGED = "hai.inventory.pump.status_changed"
    RECALL_ISSUED = "hai.inventory.recall.issued"
    APPOINTMENT_SCHEDULED = "hai.scheduling.appointment.scheduled"
    REFILL_DUE_SOON = "hai.scheduling.refill.due_soon"
    REFILL_OVERDUE = "hai.scheduling.refill.overdue"
    REFILL_COMPLETED = "hai.scheduling.refill.completed"
    FLOW_RECORDED = "hai.scheduling.flow.recorded"
    DELIVERY_UPDATED = "hai.scheduling.delivery.updated"
    DELIVERY_LATE = "hai.scheduling.delivery.late"
    SWEEP_COMPLETED = "hai.scheduling.sweep.completed"
    RESERVOIR_NEAR_EMPTY = "hai.scheduling.reservoir.near_empty"  # added to the contract
    REFILL_VOIDED = "hai.scheduling.refill.voided"
    ORDER_REFUSED = "hai.scheduling.order.refused"  # added to the contract
    LOT_FLOW_DRIFT = "hai.scheduling.lot.flow_drift"  # added: flow surveillance
    FLOW_TREND = "hai.scheduling.flow.trend"  # added: flow surveillance
    CENTER_SETTINGS_CHANGED = "hai.scheduling.center.settings_changed"  # added to the contract
    THERAPY_STATUS_CHANGED = "hai.scheduling.therapy.status_changed"  # added: pause/resume/stop
    PATIENT_CENTER_CHANGED = "hai.scheduling.patient.center_changed"  # added: a transfer
    ALERT_RAISED = "hai.alerts.alert.raised"
    ALERT_ACKNOWLEDGED = "hai.alerts.alert.acknowledged"
    ALERT_RESOLVED = "hai.alerts.alert.resolved"
    PAGE_SENT = "hai.alerts.page.sent"
    PAGE_FAILED = "hai.alerts.page.failed"
    ORDER_REQUESTED = "hai.pharmacy.order.requested"
    ORDER_CANCELLED = "hai.pharmacy.order.cancelled"
    ORDER_STATUS = "hai.pharmacy.order.status"


# ---- inventory ---------------------------------------------------------------------------

class PumpStatus(StrEnum):
    """A pump's status; services/inventory/lifecycle.py holds the moves between them."""

    IN_STOCK = "in_stock"
    IMPLANTED = "implanted"
    EXPLANTED = "explanted"
    QUARANTINED = "quarantined"
    RETIRED = "retired"


# ---- scheduling --------------------------------------------------------------------------

class Regimen(StrEnum):
    FUDR_ALTERNATING = "fudr_alternating"  # chemo fill, then saline fill, each for one interval
    SALINE_MAINTENANCE = "saline_maintenance"


class TherapyStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


OPEN_THERAPY_STATUSES = (TherapyStatus.ACTIVE, TherapyStatus.PAUSED)  # at most one per pump, patient


class FillType(StrEnum):
    CHEMO = "chemo"
    SALINE = "saline"


class AppointmentStatus(StrEnum):
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class DueBasis(StrEnum):
    """Which rule set an appointment's `due_at`."""

    INTERVAL = "interval"  # the previous fill + the refill interval
    PROJECTED_EMPTY = "projected_empty"  # the projected empty time − the near-empty margin


class SettingSource(StrEnum):
    """Where a centre's effective setting comes from: its own value, or the system default."""

    CENTER = "center"
    DEFAULT = "default"


class RefillStatus(StrEnum):
    RECORDED = "recorded"
    ENTERED_IN_ERROR = "entered_in_error"


class DeliveryStatus(StrEnum):
    """A drug delivery order: requested → accepted → compounded → dispatched → delivered, or
    rejected, or cancelled."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    COMPOUNDED = "compounded"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# the order of the forward moves: a status never moves an order backwards
DELIVERY_PROGRESS = (DeliveryStatus.REQUESTED, DeliveryStatus.ACCEPTED, DeliveryStatus.COMPOUNDED,
                     DeliveryStatus.DISPATCHED, DeliveryStatus.DELIVERED)
# statuses no order leaves
TERMINAL_DELIVERY_STATUSES = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.REJECTED, DeliveryStatus.CANCELLED})
# an order still under way (the pharmacy may move it on; the late sweep watches it)
OPEN_DELIVERY_STATUSES = tuple(s for s in DELIVERY_PROGRESS if s not in TERMINAL_DELIVERY_STATUSES)
# what the pharmacy may send on its queue (or by HTTP)
PHARMACY_STATUSES = (DeliveryStatus.ACCEPTED, DeliveryStatus.REJECTED, DeliveryStatus.COMPOUNDED,
                     DeliveryStatus.DISPATCHED, DeliveryStatus.DELIVERED)
# a chemo fill may use an order in these statuses
ADMINISTRABLE_DELIVERY_STATUSES = (DeliveryStatus.DISPATCHED, DeliveryStatus.DELIVERED)


# ---- alerts ------------------------------------------------------------------------------

class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical: a repeat may raise it, never lower it."""
        return list(Severity).index(self)


class AlertStatus(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_ALERT_STATUSES = (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED)


class AlertKind(StrEnum):
    REFILL_DUE_SOON = "refill_due_soon"
    REFILL_OVERDUE = "refill_overdue"
    RESERVOIR_NEAR_EMPTY = "reservoir_near_empty"
    FLOW_ABNORMAL = "flow_abnormal"
    DELIVERY_LATE = "delivery_late"
    DELIVERY_REJECTED = "delivery_rejected"
    DEVICE_RECALLED_IMPLANTED = "device_recalled_implanted"
    SYSTEM_STALE = "system_stale"  # the watchdog: scheduling's heartbeat not heard
    ORDER_REFUSED = "order_refused"  # added to the contract
    LOT_FLOW_DRIFT = "lot_flow_drift"  # added: a lot's pumps drift from their model's (biomed)
    FLOW_TREND = "flow_trend"  # added: a pump's trend predicts its next reading off the band


class NotificationStatus(StrEnum):
    """A page: `sent`, `retrying` or `failed` in the contract; `pending` and `sending` while under
    way, `cancelled` when the alert was acknowledged or resolved before it went out. After `sent`
    the recipient's read status moves it on, never back: `delivered` (the channel said the page
    reached the device), `seen` (its ack link was opened), `acknowledged` (the alert was
    acknowledged through it)."""

    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELIVERED = "delivered"
    SEEN = "seen"
    ACKNOWLEDGED = "acknowledged"


# a page that reached its recipient, in the order its read status moves (never backwards)
RECEIPT_STATUSES = (NotificationStatus.SENT, NotificationStatus.DELIVERED, NotificationStatus.SEEN,
                    NotificationStatus.ACKNOWLEDGED)
