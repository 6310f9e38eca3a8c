"""The dose arithmetic of services/scheduling/dosing.py at its boundaries and with the exact
basis and messages a pharmacist reads (`make mutation` found branches and texts no test pinned)."""

from __future__ import annotations

import math

import pytest

from services.scheduling.dosing import (
    DosingError,
    DosingWeight,
    DrugLine,
    HardLimits,
    check_order_hard_limits,
    diluent_text,
    dosing_weight_kg,
    fudr_amount_mg,
    fudr_line,
    hard_limit_problems,
    ideal_body_weight_kg,
    order_drug_lines,
)

LIMITS = HardLimits(fudr_min_mg_per_kg_day=0.05, fudr_max_mg_per_kg_day=1.0, dexamethasone_max_mg=50.0,
                    heparin_max_units=100_000.0)
PROTOCOL = "therapy setting (centre protocol, verify)"


def test_dosing_error_names_its_field() -> None:
    err = DosingError("sex", "must be given")
    assert (str(err), err.field, err.message) == ("sex: must be given", "sex", "must be given")


def test_ideal_body_weight_devine() -> None:
    # 152.4 cm is 5 ft exactly: the base weight; each inch above adds 2.3 kg
    assert ideal_body_weight_kg(152.4, "male") == pytest.approx(50.0, abs=1e-9)
    assert ideal_body_weight_kg(152.4, "female") == pytest.approx(45.5, abs=1e-9)
    assert ideal_body_weight_kg(152.4 + 2.54 * 10, "female") == pytest.approx(68.5, abs=1e-9)
    with pytest.raises(DosingError) as exc:
        ideal_body_weight_kg(170, "x")
    assert (exc.value.field, exc.value.message) == ("sex", "must be female or male for the ideal body weight")


def test_actual_weight_mode_ignores_height_and_sex() -> None:
    assert dosing_weight_kg(actual_kg=120, mode="actual", height_cm=None, sex=None,
                            adjusted_threshold_pct=25) == DosingWeight(120, None)


@pytest.mark.parametrize(("height_cm", "sex", "message"), [
    (None, "male", "adjusted needs the patient's height_cm and sex"),
    (175.26, None, "adjusted needs the patient's height_cm and sex")])
def test_adjusted_weight_needs_height_and_sex(height_cm: float | None, sex: str | None, message: str) -> None:
    with pytest.raises(DosingError) as exc:
        dosing_weight_kg(actual_kg=100, mode="adjusted", height_cm=height_cm, sex=sex,
                         adjusted_threshold_pct=25)
    assert (exc.value.field, exc.value.message) == ("dosing_weight", message)


def test_an_unknown_weight_mode_is_refused() -> None:
    with pytest.raises(DosingError) as exc:
        dosing_weight_kg(actual_kg=100, mode="ideal", height_cm=175.26, sex="male", adjusted_threshold_pct=25)
    assert (exc.value.field, exc.value.message) == ("dosing_weight", "must be actual or adjusted")


def test_adjusted_weight_with_its_note() -> None:
    # man of 152.4 cm: ideal 50 kg; 25 % above is 62.5 kg
    assert dosing_weight_kg(actual_kg=80.05, mode="adjusted", height_cm=152.4, sex="male",
                            adjusted_threshold_pct=25) \
        == DosingWeight(65.03, "adjusted: mean of actual 80.05 kg and ideal 50 kg")


def test_weight_at_the_threshold_stays_actual_with_its_note() -> None:
    assert dosing_weight_kg(actual_kg=62.5, mode="adjusted", height_cm=152.4, sex="male",
                            adjusted_threshold_pct=25) \
        == DosingWeight(62.5, "actual weight (within 25 % of ideal 50 kg)")
    assert dosing_weight_kg(actual_kg=62.6, mode="adjusted", height_cm=152.4, sex="male",
                            adjusted_threshold_pct=25).kg == 56.3


def test_fudr_amount_exact_and_refused_without_flow() -> None:
    assert fudr_amount_mg(dose_mg_per_kg_day=0.2, weight_kg=50, fill_volume_ml=30, flow_ml_per_day=1.5) \
        == pytest.approx(200.0, abs=1e-9)
    for flow in (0.0, -1.0):
        with pytest.raises(DosingError) as exc:
            fudr_amount_mg(dose_mg_per_kg_day=0.2, weight_kg=50, fill_volume_ml=30, flow_ml_per_day=flow)
        assert (exc.value.field, exc.value.message) \
            == ("flow_ml_per_day", "must be positive to compute a dose")


def test_fudr_line_whole() -> None:
    weight = DosingWeight(65.03, "adjusted: mean of actual 80.05 kg and ideal 50 kg")
    assert fudr_line(dose_mg_per_kg_day=0.1, weight=weight, fill_volume_ml=30, flow_ml_per_day=0.95,
                     flow_source="measured") == DrugLine(
        "floxuridine", "Floxuridine (FUDR)", 205.4, "mg",
        "0.1 mg/kg/day x 65.03 kg x 30 mL / 0.95 mL/day "
        "(adjusted: mean of actual 80.05 kg and ideal 50 kg; measured flow)")
    assert fudr_line(dose_mg_per_kg_day=0.12, weight=DosingWeight(70, None), fill_volume_ml=30,
                     flow_ml_per_day=1, flow_source="labeled").basis \
        == "0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day (labeled flow)"


def test_order_drug_lines_whole() -> None:
    lines = order_drug_lines(dose_mg_per_kg_day=0.12, weight=DosingWeight(70, None), fill_volume_ml=30,
                             flow_ml_per_day=1.0, flow_source="labeled", dexamethasone_mg=20,
                             heparin_units=30000)
    assert lines == [
        DrugLine("floxuridine", "Floxuridine (FUDR)", 252.0, "mg",
                 "0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day (labeled flow)"),
        DrugLine("dexamethasone", "Dexamethasone", 20, "mg", PROTOCOL),
        DrugLine("heparin", "Heparin", 30000, "units", PROTOCOL)]
    only_heparin = order_drug_lines(dose_mg_per_kg_day=0.12, weight=DosingWeight(70, None), fill_volume_ml=30,
                                    flow_ml_per_day=1.0, flow_source="labeled", dexamethasone_mg=None,
                                    heparin_units=0)
    assert [line.code for line in only_heparin] == ["floxuridine", "heparin"]


@pytest.mark.parametrize(("volume", "text"), [
    (30, "0.9% sodium chloride to 30 mL"), (27.5, "0.9% sodium chloride to 27.5 mL"),
    (20.123456, "0.9% sodium chloride to 20.1235 mL"), (100, "0.9% sodium chloride to 100 mL")])
def test_diluent_text_numbers_as_a_pharmacist_reads_them(volume: float, text: str) -> None:
    assert diluent_text(volume) == text


def test_hard_limit_messages() -> None:
    assert hard_limit_problems(fudr_mg_per_kg_day=1.25, dexamethasone_mg=50.5, heparin_units=100_000.5,
                               limits=LIMITS) == [
        ("fudr_mg_per_kg_day", "1.25 mg/kg/day is outside the hard limit of 0.05–1 mg/kg/day, "
                               "which no override passes"),
        ("dexamethasone_mg", "50.5 mg per fill is outside the hard limit of 0–50 mg, "
                             "which no override passes"),
        ("heparin_units", "100000.5 units per fill is outside the hard limit of 0–100,000 units, "
                          "which no override passes")]
    assert hard_limit_problems(fudr_mg_per_kg_day=2e9, dexamethasone_mg=-0.5, heparin_units=-1,
                               limits=LIMITS) == [
        ("fudr_mg_per_kg_day", "2e+09 mg/kg/day is outside the hard limit of 0.05–1 mg/kg/day, "
                               "which no override passes"),
        ("dexamethasone_mg", "-0.5 mg per fill is outside the hard limit of 0–50 mg, "
                             "which no override passes"),
        ("heparin_units", "-1 units per fill is outside the hard limit of 0–100,000 units, "
                          "which no override passes")]


def test_hard_limits_hold_at_their_bounds() -> None:
    assert hard_limit_problems(fudr_mg_per_kg_day=0.05, dexamethasone_mg=0.0, heparin_units=0.0,
                               limits=LIMITS) == []
    assert hard_limit_problems(fudr_mg_per_kg_day=1.0, dexamethasone_mg=50.0, heparin_units=100_000.0,
                               limits=LIMITS) == []


def _order(amount: float, *, dex: float | None = None, heparin: float | None = None) -> list[DrugLine]:
    lines = [DrugLine("floxuridine", "Floxuridine (FUDR)", amount, "mg", "b")]
    if dex is not None:
        lines.append(DrugLine("dexamethasone", "Dexamethasone", dex, "mg", PROTOCOL))
    if heparin is not None:
        lines.append(DrugLine("heparin", "Heparin", heparin, "units", PROTOCOL))
    return lines


def _check(lines: list[DrugLine], flow_ml_per_day: float = 1.5) -> None:
    # 50 kg x 30 mL / 1.5 mL/day = 1000 kg·day: 50–1000 mg
    check_order_hard_limits(lines, weight_kg=50, fill_volume_ml=30, flow_ml_per_day=flow_ml_per_day,
                            limits=LIMITS)


def _refusal(lines: list[DrugLine], flow_ml_per_day: float = 1.5) -> tuple[str, str]:
    with pytest.raises(DosingError) as exc:
        _check(lines, flow_ml_per_day)
    return exc.value.field, exc.value.message


def test_the_order_check_allows_the_rounding_and_nothing_more() -> None:
    _check(_order(49.95, dex=0.0, heparin=0.0))
    _check(_order(1000.05, dex=50.0, heparin=100_000.0))
    _check([DrugLine("other", "Other", 1e12, "mg", "b")])  # no limit for a drug without one
    expected = ("49.94 mg of floxuridine is outside the hard limit of 50–1000 mg for this fill "
                "(0.05–1 mg/kg/day x 50 kg x 30 mL / 1.5 mL/day); no override passes it")
    assert _refusal(_order(49.94)) == ("floxuridine", expected)
    assert _refusal(_order(1000.06))[1].startswith("1000.06 mg of floxuridine is outside")


@pytest.mark.parametrize("flow", [0.0, -1.0, math.nan])
def test_the_order_check_refuses_a_flow_that_is_not_positive(flow: float) -> None:
    assert _refusal(_order(100.0), flow) == ("floxuridine", "the pump's flow is not positive")


def test_the_order_check_of_the_additives() -> None:
    assert _refusal(_order(100.0, dex=50.5)) == (
        "dexamethasone", "50.5 mg of dexamethasone is outside the hard limit of 0–50 mg per fill")
    assert _refusal(_order(100.0, dex=-1)) == (
        "dexamethasone", "-1 mg of dexamethasone is outside the hard limit of 0–50 mg per fill")
    assert _refusal(_order(100.0, heparin=100_001)) == (
        "heparin", "100001 units of heparin are outside the hard limit of 0–100,000 units per fill")
    assert _refusal(_order(100.0, heparin=-1)) == (
        "heparin", "-1 units of heparin are outside the hard limit of 0–100,000 units per fill")
    assert _refusal(_order(100.0, heparin=1e9)) == (
        "heparin", "1e+09 units of heparin are outside the hard limit of 0–100,000 units per fill")
    assert _refusal(_order(100.0, heparin=999_999_999)) == (
        "heparin", "999999999 units of heparin are outside the hard limit of 0–100,000 units per fill")


def test_the_ideal_weight_in_a_note_is_rounded_to_a_tenth() -> None:
    # man of 160 cm: ideal 56.88 kg, shown 56.9
    assert dosing_weight_kg(actual_kg=90, mode="adjusted", height_cm=160, sex="male",
                            adjusted_threshold_pct=25) \
        == DosingWeight(73.44, "adjusted: mean of actual 90 kg and ideal 56.9 kg")
    assert dosing_weight_kg(actual_kg=60, mode="adjusted", height_cm=160, sex="male",
                            adjusted_threshold_pct=25) \
        == DosingWeight(60, "actual weight (within 25 % of ideal 56.9 kg)")


def test_the_refusal_shows_the_range_to_a_tenth_and_the_flow_with_one_decimal() -> None:
    # 62.37 kg x 30 mL / 2 mL/day = 935.55 kg·day: 46.78–935.55 mg, shown 46.8–935.5
    with pytest.raises(DosingError) as exc:
        check_order_hard_limits(_order(10.0), weight_kg=62.37, fill_volume_ml=30, flow_ml_per_day=2.0,
                                limits=LIMITS)
    assert exc.value.message == ("10 mg of floxuridine is outside the hard limit of 46.8–935.5 mg for this "
                                 "fill (0.05–1 mg/kg/day x 62.37 kg x 30 mL / 2.0 mL/day); "
                                 "no override passes it")


def test_numbers_are_rounded_once_to_four_decimals() -> None:
    # rounding to 5 decimals first would give 0.00005, then 0.0001
    assert diluent_text(0.000049996) == "0.9% sodium chloride to 0 mL"
