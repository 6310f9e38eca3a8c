"""The APIs' refusals in plain words (pure functions)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from services.dashboard.plain import label, plain_field_errors, plain_message, plain_refusal


@pytest.mark.parametrize(("field", "message", "kind", "expected"), [
    ("residual_volume_ml", "Input should be greater than or equal to 0", "greater_than_equal",
     "Enter 0 mL or more"),
    ("fill_volume_ml", "Input should be greater than 0", "greater_than", "Enter more than 0 mL"),
    ("fill_volume_ml", "Input should be less than or equal to 1000", "less_than_equal",
     "Enter 1000 mL or less"),
    ("labeled_flow_ml_per_day", "Input should be less than 5.5", "less_than",
     "Enter less than 5.5 mL/day"),
    ("pump_serial", "String should match pattern '^[!-~]+$'", "string_pattern_mismatch",
     "The pump serial number may hold only letters, digits and simple punctuation"),
    ("notes", "String should have at most 2000 characters", "string_too_long",
     "Shorten the notes to 2000 characters or fewer"),
    ("pump_serial", "Field required", "missing", "Enter the pump serial number"),
    ("residual_volume_ml", "Input should be a valid number, unable to parse string as a number",
     "float_parsing", "Enter a number of mL"),
    ("performed_at", "Input should have timezone info", "timezone_aware", "Enter a date and time"),
    ("fill_type", "Input should be 'chemo' or 'saline'", "enum", "Choose 'chemo' or 'saline'"),
    ("reason", "Value error, must not be blank: say why the record is wrong", "value_error",
     "The reason must not be blank: say why the record is wrong"),
    ("notes", "must not contain the NUL character", "text_invalid",
     "The notes must not contain the NUL character"),
    ("delivery_id", "delivery order ord-1 is requested", "", "Delivery order ord-1 is requested"),
])
def test_validator_wording_becomes_a_sentence_beside_the_field(field: str, message: str, kind: str,
                                                               expected: str) -> None:
    said = plain_message(field, message, kind)
    assert said == expected
    assert "Input should" not in said and "pattern" not in said and "^" not in said


def test_an_api_path_leaves_and_times_become_local() -> None:
    message = ("is 0.1 h after the previous fill of this pump (2026-11-26T14:26:00+00:00); if it "
               "was recorded in error, mark it entered-in-error (POST /v1/refills/r-1/entered-in-"
               "error) first")
    assert plain_message("performed_at", message, zone=ZoneInfo("America/New_York")) == (
        "Is 0.1 h after the previous fill of this pump (2026-11-26 09:26 EST); if it was recorded "
        "in error, mark it entered-in-error first")


def test_field_errors_by_their_last_segment_joined_when_several() -> None:
    errors = [{"field": "body.residual_volume_ml", "message": "Input should be greater than or "
               "equal to 0", "type": "greater_than_equal"},
              {"field": "residual_volume_ml", "message": "above the previous fill (30 mL)"},
              {"field": "body", "message": "not valid JSON"}]
    assert plain_field_errors(errors) == {
        "residual_volume_ml": "Enter 0 mL or more; Above the previous fill (30 mL)",
        "form": "Not valid JSON"}


@pytest.mark.parametrize(("status", "detail", "expected"), [
    (409, "pump X is already registered (status in_stock)",
     "Not done, because the record changed or is in another state: pump X is already registered "
     "(status in_stock)."),
    (404, "no patient with this MRN", "Not found: no patient with this MRN."),
    (0, "ConnectError", "The inventory service cannot be reached right now; try again in a moment."),
    (503, "pool exhausted", "The inventory service is busy; try again in a moment."),
    (500, "Traceback boom", "The inventory service could not do this right now; try again, and "
                            "call support if it keeps failing."),
    (403, "needs role biomed", "Your role may not do this. Ask a colleague with that role."),
])
def test_refusals_say_what_happened_without_status_codes(status: int, detail: str,
                                                        expected: str) -> None:
    said = plain_refusal("inventory", status, detail)
    assert said == expected
    assert "answered" not in said and str(status) not in said.replace(detail, "")


def test_data_keys_read_as_labels() -> None:
    assert label("hours_to_empty") == "Hours to empty"
    assert label("flow_deviation_pct") == "Flow deviation (%)"
    assert label("measured_flow_ml_per_day") == "Measured flow (mL/day)"
    assert label("refill_ids") == "Refill IDs"
