"""UDI parsing: both GS1 forms, and every way a UDI can fail to register a pump."""

from __future__ import annotations

from datetime import date

import pytest

from services.inventory.catalogue import DEMO_CATALOGUE
from services.inventory.udi import (
    GS,
    UdiError,
    check_digit,
    gtin_is_valid,
    human_readable,
    parse_udi,
    scanned_carrier,
)

HRI = "(01)00812345000016(17)281231(10)LOT42(21)SN1001"
RAW = f"0100812345000016172812311" f"0LOT42{GS}21SN1001"


def fields(problems: UdiError) -> list[str]:
    return [p.field for p in problems.problems]


def test_human_readable_form() -> None:
    udi = parse_udi(HRI)
    assert (udi.gtin, udi.serial_number, udi.lot_number, udi.expiry_date) == (
        "00812345000016", "SN1001", "LOT42", date(2028, 12, 31))


def test_raw_form_with_group_separators_gives_the_same() -> None:
    assert parse_udi(RAW) == parse_udi(HRI)


def test_raw_form_behind_a_symbology_identifier() -> None:
    assert parse_udi("]d2" + RAW) == parse_udi(HRI)


def test_elements_in_any_order() -> None:
    udi = parse_udi("(01)00812345000016(21)SN7(10)L9(17)300115")
    assert (udi.serial_number, udi.lot_number, udi.expiry_date) == ("SN7", "L9", date(2030, 1, 15))


def test_day_zero_means_the_end_of_the_month() -> None:
    assert parse_udi("(01)00812345000016(17)280200(21)S1").expiry_date == date(2028, 2, 29)


def test_lot_is_optional() -> None:
    assert parse_udi("(01)00812345000016(17)281231(21)SN1").lot_number is None


def test_digital_link_uri() -> None:
    udi = parse_udi("https://id.gs1.org/01/00812345000016/21/SN1?17=281231&10=L1")
    assert (udi.gtin, udi.serial_number, udi.expiry_date) == ("00812345000016", "SN1",
                                                              date(2028, 12, 31))


def test_wrong_check_digit_is_named() -> None:
    with pytest.raises(UdiError) as err:
        parse_udi("(01)00812345000017(17)281231(10)LOT42(21)SN1001")
    assert fields(err.value) == ["udi.gtin"]
    assert "check digit" in err.value.problems[0].message


def test_wrong_check_digit_in_the_raw_form() -> None:
    with pytest.raises(UdiError) as err:
        parse_udi(f"01008123450000171728123121SN1{GS}10L")
    assert fields(err.value) == ["udi.gtin"]


@pytest.mark.parametrize(("udi", "missing"), [
    ("(01)00812345000016(17)281231(10)LOT42", ["udi.serial_number"]),
    ("(01)00812345000016(10)LOT42(21)SN1", ["udi.expiry_date"]),
    ("(17)281231(10)LOT42(21)SN1", ["udi.gtin"]),
    ("(01)00812345000016(10)LOT42", ["udi.serial_number", "udi.expiry_date"]),
])
def test_missing_application_identifiers_are_each_named(udi: str, missing: list[str]) -> None:
    with pytest.raises(UdiError) as err:
        parse_udi(udi)
    assert fields(err.value) == missing


@pytest.mark.parametrize("udi", [
    "(01)00812345000016(17)281331(21)SN1",  # month 13
    "(01)00812345000016(17)280231(21)SN1",  # 31 February
    f"0100812345000016172813312{GS}1SN1",
])
def test_an_expiry_that_is_not_a_date(udi: str) -> None:
    with pytest.raises(UdiError) as err:
        parse_udi(udi)
    assert fields(err.value) == ["udi.expiry_date"]


@pytest.mark.parametrize("udi", ["", "   ", "hello", "(99"])
def test_garbage_is_refused(udi: str) -> None:
    with pytest.raises(UdiError) as err:
        parse_udi(udi)
    assert fields(err.value) == ["udi"]


def test_check_digit_and_gtin_validity() -> None:
    assert check_digit("0081234500001") == 6
    assert gtin_is_valid("00812345000016")
    assert not gtin_is_valid("00812345000017")
    assert not gtin_is_valid("0081234500001X")
    assert gtin_is_valid("96385074")  # GTIN-8


def test_the_demo_catalogue_has_valid_demo_gtins() -> None:
    gtins = [e.gtin for e in DEMO_CATALOGUE]
    assert all(gtin_is_valid(g) for g in gtins)
    assert len(set(gtins)) == len(gtins)
    assert all(e.name.startswith("DEMO ") for e in DEMO_CATALOGUE)


@pytest.mark.parametrize("text", [None, "", "   ", "(01)00812345000016(21)SN1", "  (01)0081234500"])
def test_a_typed_or_missing_udi_has_no_scanned_carrier(text: str | None) -> None:
    assert scanned_carrier(text) is None


@pytest.mark.parametrize(("text", "kept"), [
    ("  0100812345000016172811301" + "0LOT-A\x1d21SN-1 ", "0100812345000016172811301" + "0LOT-A\x1d21SN-1"),
    ("https://id.gs1.org/01/00812345000016/21/SN-1", "https://id.gs1.org/01/00812345000016/21/SN-1"),
])
def test_a_scanned_udi_is_kept_as_read_without_surrounding_blanks(text: str, kept: str) -> None:
    assert scanned_carrier(text) == kept


def test_the_human_readable_form_names_each_element_in_gs1_order() -> None:
    assert human_readable("00812345000016", date(2028, 11, 30), "LOT-A", "SN-1") \
        == "(01)00812345000016(17)281130(10)LOT-A(21)SN-1"
    assert human_readable("00812345000016", None, "LOT-A", "SN-1") \
        == "(01)00812345000016(10)LOT-A(21)SN-1"
    assert human_readable("00812345000016", date(2028, 1, 5), None, "SN-1") \
        == "(01)00812345000016(17)280105(21)SN-1"
    assert human_readable("00812345000016", None, "", "SN-1") == "(01)00812345000016(21)SN-1"
