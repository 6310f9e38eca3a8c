"""Properties of the shared text types (shared/text.py) and of the cursor codec
(shared/pagination.py): what they accept is storable and reachable; nothing else gets through."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.errors import Invalid
from shared.pagination import MAX_CURSOR_LENGTH, CursorCodec, _b64, _unb64
from shared.text import Centre, Code, Key, Line, Paragraph

HOSTILE = ["\x00", "A\x00B", "\ud800", "x\udfffy", "a\x01b", "\x7f", "\x9b"]


class Form(BaseModel):
    code: Code | None = None
    centre: Centre | None = None
    line: Line | None = None
    paragraph: Paragraph | None = None
    key: Key | None = None


FIELDS = ["code", "centre", "line", "paragraph", "key"]


def _validate(field: str, value: Any) -> Any:
    return getattr(Form.model_validate({field: value}), field)


def _error(field: str, value: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        Form.model_validate({field: value})
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    return dict(error)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_nul_surrogates_and_controls_are_refused_in_plain_words(field: str, value: str) -> None:
    error = _error(field, value)
    assert error["msg"].startswith("must"), error["msg"]


@given(st.text())
@example("A\x00B")
@example("\ud800")
def test_whatever_any_text_type_accepts_is_storable(value: str) -> None:
    for field in FIELDS:
        try:
            kept = _validate(field, value)
        except ValidationError:
            continue
        kept.encode("utf-8")  # no lone surrogate
        assert "\x00" not in kept
        if field != "paragraph":
            assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in kept), (field, kept)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
@example("A/B")
@example("../x")
@example(".")
@example("..")
@example(" MRN-1 ")
@example("A\\B")
@example("\u00a0x")
def test_an_accepted_identifier_is_one_url_path_segment_that_reads_back(value: str) -> None:
    for field in ("code", "centre"):
        try:
            kept = _validate(field, value)
        except ValidationError:
            continue
        assert kept == kept.strip() and kept
        assert "/" not in kept and "\\" not in kept and not kept.startswith(".")
        assert kept not in (".", "..")
        assert _validate(field, kept) == kept  # stable: what is stored validates again


@pytest.mark.parametrize("value", ["DEMO-SN-0001", "MRN-1", "LOT42", "SN1001", "MRN_7.b", "A+B#1"])
def test_the_identifiers_in_use_stay_valid(value: str) -> None:
    assert _validate("code", value) == value
    assert _validate("centre", value) == value


@pytest.mark.parametrize("value", ["north", "Centre Léon Bérard", "CTR-A", "default"])
def test_centres_may_be_words(value: str) -> None:
    assert _validate("centre", value) == value


@pytest.mark.parametrize("field", ["code", "centre", "line", "paragraph"])
@pytest.mark.parametrize("value", ["", "   ", "\t", "\u2003"])
def test_blank_is_refused(field: str, value: str) -> None:
    error = _error(field, value)
    assert error["msg"] in ("must not be blank",
                            "must not contain control characters (such as tabs or line breaks)")


def test_a_paragraph_keeps_its_line_breaks() -> None:
    assert _validate("paragraph", " one\n\ttwo\r\n ") == "one\n\ttwo"


# ---------------------------------------------------------------- cursors

CODEC = CursorCodec(b"k" * 32)
KEY_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2199, 12, 31),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
)


@given(st.lists(KEY_VALUES, min_size=1, max_size=3), st.text(string.ascii_letters, max_size=20))
def test_a_cursor_reads_back_the_values_it_was_made_of(values: list[Any], list_id: str) -> None:
    cursor = CODEC.encode(values, list_id=list_id)
    # three texts of astral characters escape to a cursor over the limit any request refuses;
    # the keys lists page by are far shorter (the test below)
    assume(len(cursor) <= MAX_CURSOR_LENGTH)
    kinds = [type(v) for v in values]
    assert CODEC.decode(cursor, list_id=list_id, kinds=kinds) == values


def test_the_longest_real_key_makes_a_cursor_within_the_limit() -> None:
    """The longest key a list pages by: a timestamp with its offset, a 64-character text key
    (shared/text.py) and a 36-character id, for a 20-character list id."""
    values = [datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14))),
              "K" * 64, "0" * 36]
    cursor = CODEC.encode(values, list_id="L" * 20)
    assert len(cursor) <= MAX_CURSOR_LENGTH
    assert CODEC.decode(cursor, list_id="L" * 20, kinds=[datetime, str, str]) == values


@given(st.text(max_size=300))
@example("W3sidiI6MX1d")  # the old unsigned [{"v":1}]
@example("e30.e30")
def test_any_text_is_a_cursor_or_a_422_naming_cursor(text: str) -> None:
    try:
        CODEC.decode(text, list_id="x")
    except Invalid as exc:
        assert exc.field == "cursor"
    else:  # pragma: no cover - would need the key
        raise AssertionError("an unsigned cursor was accepted")


@given(st.lists(KEY_VALUES, min_size=1, max_size=2), st.data())
def test_any_edit_of_a_cursor_is_refused(values: list[Any], data: st.DataObject) -> None:
    cursor = CODEC.encode(values, list_id="l")
    payload, mac = cursor.split(".")
    raw = bytearray(_unb64(payload))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    others = data.draw(st.lists(KEY_VALUES, min_size=1, max_size=2).filter(lambda v: v != values))
    # a byte flipped, and a well-formed cursor of other values under the first one's signature
    for edited_payload in (bytes(raw), _unb64(CODEC.encode(others, list_id="l").split(".")[0])):
        with pytest.raises(Invalid) as caught:
            CODEC.decode(f"{_b64(edited_payload)}.{mac}", list_id="l")
        assert caught.value.field == "cursor"


def test_a_cursor_from_another_list_or_key_or_of_another_type_is_refused() -> None:
    cursor = CODEC.encode([datetime(2026, 11, 1, tzinfo=UTC), "id-1"], list_id="alerts")
    for attempt in (
        lambda: CODEC.decode(cursor, list_id="silences"),
        lambda: CursorCodec(b"other").decode(cursor, list_id="alerts"),
        lambda: CODEC.decode(cursor, list_id="alerts", kinds=[int, str]),
        lambda: CODEC.decode(cursor, list_id="alerts", kinds=[datetime]),
        lambda: CODEC.decode(CODEC.encode([True], list_id="alerts"), list_id="alerts", kinds=[int]),
    ):
        with pytest.raises(Invalid) as caught:
            attempt()
        assert caught.value.field == "cursor"
