"""What a refused UDI tells the person scanning it, word for word, and the GTIN lengths GS1
allows (`make mutation` found messages and lengths no test pinned)."""

from __future__ import annotations

import pytest

from services.inventory.udi import UdiError, UdiProblem, gtin_is_valid, parse_udi


def _problems(udi: str) -> list[tuple[str, str]]:
    with pytest.raises(UdiError) as err:
        parse_udi(udi)
    return [(p.field, p.message) for p in err.value.problems]


def test_every_missing_element_with_its_message() -> None:
    assert _problems("(10)LOT42") == [
        ("udi.gtin", "GTIN (AI 01) is missing"),
        ("udi.serial_number", "serial number (AI 21) is missing"),
        ("udi.expiry_date", "expiry date (AI 17) is missing")]


def test_a_blank_serial_number_is_missing() -> None:
    assert _problems("(01)00812345000016(17)281231(21)  ") == [
        ("udi.serial_number", "serial number (AI 21) is missing")]


def test_a_wrong_check_digit_with_biips_reason() -> None:
    assert _problems("(01)00812345000017(17)281231(21)S") == [
        ("udi.gtin", "GTIN (AI 01) is invalid: Invalid GTIN check digit for '00812345000017': "
                     "Expected 6, got 7.")]


def test_an_expiry_that_is_not_a_date_says_so() -> None:
    assert _problems("(01)00812345000016(17)280231(21)SN1") == [
        ("udi.expiry_date", "expiry date (AI 17) is not a date: "
                            "Failed to parse GS1 AI (17) date/time from '280231'.")]


@pytest.mark.parametrize(("udi", "message"), [
    ("  ", "empty UDI"),
    ("hello", "not a GS1 element string: Failed to get GS1 Application Identifier from 'hello'."),
    ("https://example.com/x", "not a GS1 element string: unreadable"),
])
def test_text_that_is_no_udi(udi: str, message: str) -> None:
    assert _problems(udi) == [("udi", message)]


def test_the_error_text_joins_every_problem() -> None:
    err = UdiError([UdiProblem("udi.gtin", "GTIN (AI 01) is missing"), UdiProblem("udi", "x")])
    assert str(err) == "udi.gtin: GTIN (AI 01) is missing; udi: x"


@pytest.mark.parametrize("gtin", ["96385074", "036000291452", "4006381333931", "00812345000016"])
def test_gtins_of_each_gs1_length(gtin: str) -> None:
    assert gtin_is_valid(gtin)


# each with a correct mod-10 check digit (leading zeros do not change it): refused for its length
@pytest.mark.parametrize("gtin", ["0000000", "0096385074", "00096385074", "000812345000016", ""])
def test_other_lengths_are_not_gtins(gtin: str) -> None:
    assert not gtin_is_valid(gtin)
