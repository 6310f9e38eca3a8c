"""Simulated consortium flow data (tests and bench): pump models made of lots, each pump with its
own bias around its lot's drift, each reading that bias plus measurement noise, one reading per
pump every refill interval from a random first day; and a replay of the readings, in time order,
through the lot test as scheduling runs it (one test of the reading's lot after each reading)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.scheduling.surveillance import GroupSums, LotDriftRule, judge_lot, reading_delta
from tests.factories import T0

# figures the simulation assumes (DOMAIN.md, Flow surveillance, "How the false-alarm rate was
# measured"): a pump's own bias around its lot's, and one reading's noise around its pump's bias
PUMP_SD_PCT = 2.0
READING_SD_PCT = 2.0
INTERVAL_DAYS = 14.0


@dataclass(frozen=True)
class SimReading:
    at: datetime
    model_code: str
    lot_number: str
    serial: str
    deviation_pct: float


def simulate_model(rng: random.Random, *, model_code: str = "SIM-1", lots: int = 20,
                   pumps_per_lot: int = 10, readings_per_pump: int = 8,
                   drift_pct: dict[int, float] | None = None,
                   pump_sd_pct: float = PUMP_SD_PCT,
                   reading_sd_pct: float = READING_SD_PCT) -> list[SimReading]:
    """The readings of one model's pumps, oldest first; `drift_pct` maps a lot's index to the
    mean deviation its pumps run at (0 % for the others)."""
    drift_pct = drift_pct or {}
    out: list[SimReading] = []
    for lot in range(lots):
        lot_number = f"{model_code}-L{lot:03d}"
        for p in range(pumps_per_lot):
            bias = drift_pct.get(lot, 0.0) + rng.gauss(0.0, pump_sd_pct)
            first = T0 + timedelta(days=rng.uniform(0.0, INTERVAL_DAYS))
            for k in range(readings_per_pump):
                out.append(SimReading(first + timedelta(days=k * INTERVAL_DAYS), model_code,
                                      lot_number, f"{lot_number}-P{p:03d}",
                                      bias + rng.gauss(0.0, reading_sd_pct)))
    out.sort(key=lambda r: r.at)
    return out


@dataclass
class LotOutcome:
    """What the replay saw of one lot: when it was first flagged (reading index), and the
    largest |deviation| of its readings up to then (or up to the end)."""

    flagged_at: int | None = None
    max_abs_deviation_before_flag_pct: float = 0.0
    evidence: dict[str, object] = field(default_factory=dict)


def replay(readings: list[SimReading], rule: LotDriftRule) -> dict[str, LotOutcome]:
    """Feed the readings in order through the running sums and test the reading's lot after
    each one, as scheduling does on every recorded refill."""
    pumps: dict[str, tuple[int, float]] = {}
    lots: dict[tuple[str, str], GroupSums] = {}
    models: dict[str, GroupSums] = {}
    outcomes: dict[str, LotOutcome] = {}
    for i, r in enumerate(readings):
        n, total = pumps.get(r.serial, (0, 0.0))
        delta = reading_delta(n, total, r.deviation_pct, min_readings=rule.min_readings_per_pump)
        pumps[r.serial] = (n + 1, total + r.deviation_pct)
        key = (r.model_code, r.lot_number)
        lots[key] = lots.get(key, GroupSums()) + delta
        models[r.model_code] = models.get(r.model_code, GroupSums()) + delta
        outcome = outcomes.setdefault(r.lot_number, LotOutcome())
        if outcome.flagged_at is not None:
            continue
        outcome.max_abs_deviation_before_flag_pct = max(
            outcome.max_abs_deviation_before_flag_pct, abs(r.deviation_pct))
        verdict = judge_lot(r.model_code, r.lot_number, lots[key], models[r.model_code], rule)
        if verdict.drifting:
            outcome.flagged_at = i
            outcome.evidence = verdict.evidence()
    return outcomes


def false_alarm_rate(*, seed: int, models: int, rule: LotDriftRule,
                     **shape: Any) -> tuple[int, int]:
    """(lots flagged, lots) over `models` simulated models with no drifting lot."""
    rng = random.Random(seed)
    flagged = total = 0
    for m in range(models):
        outcomes = replay(simulate_model(rng, model_code=f"SIM-{m}", **shape), rule)
        flagged += sum(1 for o in outcomes.values() if o.flagged_at is not None)
        total += len(outcomes)
    return flagged, total


def detection(*, seed: int, models: int, rule: LotDriftRule, drift: float = 8.0,
              band_pct: float = 15.0, **shape: Any) -> tuple[int, int, int]:
    """(drifting lots flagged before any of their readings left ±band_pct, flagged at all,
    drifting lots): one drifting lot per simulated model."""
    rng = random.Random(seed)
    early = flagged = 0
    for m in range(models):
        outcomes = replay(simulate_model(rng, model_code=f"SIM-{m}", drift_pct={0: drift}, **shape),
                          rule)
        lot = outcomes[f"SIM-{m}-L000"]
        if lot.flagged_at is not None:
            flagged += 1
            early += lot.max_abs_deviation_before_flag_pct <= band_pct
    return early, flagged, models
