"""The pharmacy queue's messages (CONTRACT.md, Pharmacy queue)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, WithJsonSchema

from shared.contracts.vocabulary import PHARMACY_STATUSES, DeliveryStatus, EventType
from shared.events import PHARMACY_EXCHANGE
from shared.messaging.base import QueueSpec
from shared.text import LINE_BREAKS, Key, text_rules

ORDERS_QUEUE = "pharmacy.orders"
STATUS_QUEUE = "scheduling.pharmacy-status"
# the queue the pharmacy system (or the HL7 v2 bridge in its place) consumes; scheduling declares it
ORDERS_QUEUE_SPEC = QueueSpec(ORDERS_QUEUE, (
    (PHARMACY_EXCHANGE, EventType.ORDER_REQUESTED),
    (PHARMACY_EXCHANGE, EventType.ORDER_CANCELLED),
))


def _sent_by_the_pharmacy(status: DeliveryStatus) -> DeliveryStatus:
    if status not in PHARMACY_STATUSES:
        raise ValueError(f"the pharmacy sends {', '.join(PHARMACY_STATUSES)}, not {status}")
    return status


# a status the pharmacy may send
OrderStatus = Annotated[DeliveryStatus, AfterValidator(_sent_by_the_pharmacy),
                        WithJsonSchema({"type": "string", "enum": [s.value for s in PHARMACY_STATUSES]})]


class OrderPatient(BaseModel):
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    weight_kg: float


class OrderPump(BaseModel):
    serial_number: str
    model_code: str
    reservoir_ml: float
    flow_ml_per_day: float


class OrderDrug(BaseModel):
    code: Literal["floxuridine", "dexamethasone", "heparin"]
    name: str
    amount: float
    unit: Literal["mg", "units"]
    basis: str


class OrderRequestedData(BaseModel):
    """`hai.pharmacy.order.requested`: a drug delivery order for one chemo fill."""

    model_config = ConfigDict(extra="allow")

    order_id: str
    patient: OrderPatient
    pump: OrderPump
    fill_volume_ml: float
    infusion_days: float
    drugs: list[OrderDrug]
    diluent: str
    needed_by: AwareDatetime
    appointment_id: str
    center: str | None = None  # added: the patient's centre (where the fill goes)


class OrderCancelledData(OrderRequestedData):
    """`hai.pharmacy.order.cancelled`: the order as it was requested, and why it is withdrawn."""

    reason: str | None = None


class OrderStatusData(BaseModel):
    """`hai.pharmacy.order.status`, published by the pharmacy."""

    model_config = ConfigDict(extra="forbid")

    order_id: Key
    status: OrderStatus
    at: AwareDatetime
    # the pharmacy's text, refused (dead-lettered) when no database could hold it
    reason: Annotated[str, text_rules(keep=LINE_BREAKS, not_blank=False)] | None = None
    lot: Annotated[str, text_rules(not_blank=False)] | None = None
    beyond_use_at: AwareDatetime | None = None
