"""Dose arithmetic of DOMAIN.md (pure functions): dosing weight, the FUDR amount and the order's
drug lines, each with the basis a pharmacist can check."""

from __future__ import annotations

from dataclasses import dataclass

CM_PER_INCH = 2.54
INCHES_AT_FIVE_FEET = 60.0
IBW_BASE_KG = {"male": 50.0, "female": 45.5}
IBW_KG_PER_INCH = 2.3


class DosingError(ValueError):
    """A dose that cannot be computed or must not be sent; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def ideal_body_weight_kg(height_cm: float, sex: str) -> float:
    """Devine IBW: 50 kg (men) or 45.5 kg (women) + 2.3 kg per inch over 5 ft."""
    if sex not in IBW_BASE_KG:
        raise DosingError("sex", "must be female or male for the ideal body weight")
    inches = height_cm / CM_PER_INCH
    return IBW_BASE_KG[sex] + IBW_KG_PER_INCH * (inches - INCHES_AT_FIVE_FEET)


@dataclass(frozen=True)
class DosingWeight:
    kg: float
    note: str | None  # how an adjusted weight was reached, for the basis


def dosing_weight_kg(*, actual_kg: float, mode: str, height_cm: float | None, sex: str | None,
                     adjusted_threshold_pct: float) -> DosingWeight:
    """Actual weight, or (mode `adjusted`) the mean of actual and ideal when actual is more than
    the threshold above ideal (MSKCC)."""
    if mode == "actual":
        return DosingWeight(actual_kg, None)
    if mode != "adjusted":
        raise DosingError("dosing_weight", "must be actual or adjusted")
    if height_cm is None or sex is None:
        raise DosingError("dosing_weight", "adjusted needs the patient's height_cm and sex")
    ibw = ideal_body_weight_kg(height_cm, sex)
    if actual_kg > ibw * (1 + adjusted_threshold_pct / 100.0):
        adjusted = round((actual_kg + ibw) / 2, 2)
        return DosingWeight(adjusted, f"adjusted: mean of actual {_num(actual_kg)} kg and ideal "
                                      f"{_num(round(ibw, 1))} kg")
    return DosingWeight(actual_kg, f"actual weight (within {_num(adjusted_threshold_pct)} % of "
                                   f"ideal {_num(round(ibw, 1))} kg)")


def fudr_amount_mg(*, dose_mg_per_kg_day: float, weight_kg: float, fill_volume_ml: float,
                   flow_ml_per_day: float) -> float:
    """FUDR (mg) = dose (mg/kg/day) × weight (kg) × pump volume (mL) / pump flow (mL/day)."""
    if flow_ml_per_day <= 0:
        raise DosingError("flow_ml_per_day", "must be positive to compute a dose")
    return dose_mg_per_kg_day * weight_kg * fill_volume_ml / flow_ml_per_day


def in_label_range(dose_mg_per_kg_day: float, *, minimum: float, maximum: float) -> bool:
    """True when the dose lies inside the label range of intra-arterial FUDR."""
    return minimum <= dose_mg_per_kg_day <= maximum


def _num(value: float, min_decimals: int = 0) -> str:
    """A number as a pharmacist reads it: no float noise, at least `min_decimals` decimals."""
    text = f"{round(value, 4):.4f}".rstrip("0").rstrip(".")
    if min_decimals and "." not in text:
        text += "." + "0" * min_decimals
    return text


@dataclass(frozen=True)
class DrugLine:
    code: str
    name: str
    amount: float
    unit: str
    basis: str


def fudr_line(*, dose_mg_per_kg_day: float, weight: DosingWeight, fill_volume_ml: float,
              flow_ml_per_day: float, flow_source: str) -> DrugLine:
    """The floxuridine line of an order, with its basis."""
    amount = fudr_amount_mg(dose_mg_per_kg_day=dose_mg_per_kg_day, weight_kg=weight.kg,
                            fill_volume_ml=fill_volume_ml, flow_ml_per_day=flow_ml_per_day)
    basis = (f"{_num(dose_mg_per_kg_day)} mg/kg/day x {_num(weight.kg)} kg x "
             f"{_num(fill_volume_ml)} mL / {_num(flow_ml_per_day, 1)} mL/day")
    notes = [n for n in (weight.note, f"{flow_source} flow") if n]
    basis += f" ({'; '.join(notes)})"
    return DrugLine("floxuridine", "Floxuridine (FUDR)", round(amount, 1), "mg", basis)


def order_drug_lines(*, dose_mg_per_kg_day: float, weight: DosingWeight, fill_volume_ml: float,
                     flow_ml_per_day: float, flow_source: str, dexamethasone_mg: float | None,
                     heparin_units: float | None) -> list[DrugLine]:
    """The drugs of a chemo fill: FUDR, then dexamethasone and heparin only when the therapy sets them."""
    lines = [fudr_line(dose_mg_per_kg_day=dose_mg_per_kg_day, weight=weight,
                       fill_volume_ml=fill_volume_ml, flow_ml_per_day=flow_ml_per_day,
                       flow_source=flow_source)]
    if dexamethasone_mg is not None:
        lines.append(DrugLine("dexamethasone", "Dexamethasone", dexamethasone_mg, "mg",
                              "therapy setting (centre protocol, verify)"))
    if heparin_units is not None:
        lines.append(DrugLine("heparin", "Heparin", heparin_units, "units",
                              "therapy setting (centre protocol, verify)"))
    return lines


def diluent_text(fill_volume_ml: float) -> str:
    """The diluent line: 0.9 % sodium chloride up to the fill volume."""
    return f"0.9% sodium chloride to {_num(fill_volume_ml)} mL"


# ---------------------------------------------------------------- hard limits (DOMAIN.md, Safety rules)

@dataclass(frozen=True)
class HardLimits:
    """The hard limits of one fill that no oncologist's override passes."""

    fudr_min_mg_per_kg_day: float
    fudr_max_mg_per_kg_day: float
    dexamethasone_max_mg: float
    heparin_max_units: float


def _within(value: float, low: float, high: float) -> bool:
    # written so that NaN (every comparison false) falls outside, as infinity does
    return low <= value <= high


def hard_limit_problems(*, fudr_mg_per_kg_day: float | None, dexamethasone_mg: float | None,
                        heparin_units: float | None,
                        limits: HardLimits) -> list[tuple[str, str]]:
    """Each dose setting outside its hard limit as (field, message); empty when all are within."""
    problems: list[tuple[str, str]] = []
    if fudr_mg_per_kg_day is not None and not _within(
            fudr_mg_per_kg_day, limits.fudr_min_mg_per_kg_day, limits.fudr_max_mg_per_kg_day):
        problems.append(("fudr_mg_per_kg_day",
                         f"{_plain(fudr_mg_per_kg_day)} mg/kg/day is outside the hard limit of "
                         f"{_num(limits.fudr_min_mg_per_kg_day)}–{_num(limits.fudr_max_mg_per_kg_day)}"
                         " mg/kg/day, which no override passes"))
    if dexamethasone_mg is not None and not _within(dexamethasone_mg, 0.0,
                                                    limits.dexamethasone_max_mg):
        problems.append(("dexamethasone_mg",
                         f"{_plain(dexamethasone_mg)} mg per fill is outside the hard limit of "
                         f"0–{_num(limits.dexamethasone_max_mg)} mg, which no override passes"))
    if heparin_units is not None and not _within(heparin_units, 0.0, limits.heparin_max_units):
        problems.append(("heparin_units",
                         f"{_plain(heparin_units)} units per fill is outside the hard limit of "
                         f"0–{limits.heparin_max_units:,.0f} units, which no override passes"))
    return problems


def check_order_hard_limits(lines: list[DrugLine], *, weight_kg: float, fill_volume_ml: float,
                            flow_ml_per_day: float, limits: HardLimits) -> None:
    """Check the drug amounts of an order once more, just before it is sent: the FUDR amount
    against hard range × weight × volume / flow, the additives against their limits per fill.
    Raises DosingError naming the drug."""
    for line in lines:
        if line.code == "floxuridine":
            if not flow_ml_per_day > 0:
                raise DosingError("floxuridine", "the pump's flow is not positive")
            factor = weight_kg * fill_volume_ml / flow_ml_per_day
            low = limits.fudr_min_mg_per_kg_day * factor
            high = limits.fudr_max_mg_per_kg_day * factor
            # the amount is rounded to 0.1 mg on the order: allow that rounding, nothing more
            if not _within(line.amount, low - 0.05, high + 0.05):
                raise DosingError("floxuridine",
                                  f"{_plain(line.amount)} mg of floxuridine is outside the hard "
                                  f"limit of {_num(round(low, 1))}–{_num(round(high, 1))} mg for this fill "
                                  f"({_num(limits.fudr_min_mg_per_kg_day)}–"
                                  f"{_num(limits.fudr_max_mg_per_kg_day)} mg/kg/day x "
                                  f"{_num(weight_kg)} kg x {_num(fill_volume_ml)} mL / "
                                  f"{_num(flow_ml_per_day, 1)} mL/day); no override passes it")
        elif line.code == "dexamethasone" and not _within(line.amount, 0.0,
                                                          limits.dexamethasone_max_mg):
            raise DosingError("dexamethasone", f"{_plain(line.amount)} mg of dexamethasone is "
                                               "outside the hard limit of 0–"
                                               f"{_num(limits.dexamethasone_max_mg)} mg per fill")
        elif line.code == "heparin" and not _within(line.amount, 0.0, limits.heparin_max_units):
            raise DosingError("heparin", f"{_plain(line.amount)} units of heparin are outside the "
                                         f"hard limit of 0–{limits.heparin_max_units:,.0f} units "
                                         "per fill")


def _plain(value: float) -> str:
    """A number as given, readable also when absurd (1e+300, inf)."""
    return _num(value) if abs(value) < 1e9 else f"{value:g}"
