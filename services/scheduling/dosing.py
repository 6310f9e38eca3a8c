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
