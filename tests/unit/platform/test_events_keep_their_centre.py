"""Events keep their centre (issue 22): every payload about a patient or a centre's pump names
the centre, so a consumer can scope what it does with it. The few that do not are listed here
with the reason."""

from __future__ import annotations

from shared.contracts.registry import SPECS
from shared.contracts.vocabulary import EventType

# consortium-wide, or centred per item inside
WITHOUT_A_CENTRE = {
    EventType.RECALL_ISSUED: "the recall is every centre's; each implanted pump it names has "
                             "its centre (RecalledImplant.center)",
    EventType.SWEEP_COMPLETED: "the scheduler's heartbeat, about no centre",
    EventType.ORDER_STATUS: "the pharmacy's answer names the order, which has the centre",
    EventType.LOT_FLOW_DRIFT: "a lot's pumps lie in many centres: the lot alert is biomed's, "
                              "seen by tokens of every centre",
}


def test_every_event_payload_carries_the_centre() -> None:
    missing = [spec.event_type.value for spec in SPECS
               if "center" not in spec.payload.model_fields
               and spec.event_type not in WITHOUT_A_CENTRE]
    assert not missing, f"payloads without `center`: {missing}"


def test_the_exceptions_are_still_events_and_carry_no_centre() -> None:
    by_type = {spec.event_type: spec for spec in SPECS}
    for event_type in WITHOUT_A_CENTRE:
        assert "center" not in by_type[event_type].payload.model_fields, event_type
    recall = by_type[EventType.RECALL_ISSUED].payload.model_fields["implanted"].annotation
    assert "center" in recall.__args__[0].model_fields  # type: ignore[union-attr]
