"""docs/DOMAIN.md names, beside each clinical default, the setting that overrides it: the names
and defaults it gives are the settings' own, and no clinical setting is missing from it."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

DOMAIN = Path(__file__).resolve().parents[3] / "docs" / "DOMAIN.md"
NAMED = re.compile(r"`HAI_([A-Z0-9_]+)=([0-9.]+)`")
# a setting is clinical by its unit (DOMAIN.md's figures), or by being one of these
CLINICAL_UNIT = re.compile(r"_(days|hours|pct|mg|units|mg_per_kg_day)$")
CLINICAL_BY_NAME = {"escalation_delay_seconds", "overdue_critical_hours_to_empty"}


def named_in_domain() -> dict[str, str]:
    return {name.lower(): value for name, value in NAMED.findall(DOMAIN.read_text("utf-8"))}


def test_each_setting_domain_md_names_exists_with_the_default_it_gives() -> None:
    fields = Settings.model_fields
    named = named_in_domain()
    assert named, "DOMAIN.md names no setting as `HAI_NAME=default`"
    unknown = sorted(f"HAI_{name.upper()}" for name in named if name not in fields)
    assert unknown == [], f"DOMAIN.md names settings that do not exist: {unknown}"
    wrong = {f"HAI_{name.upper()}": (value, fields[name].default) for name, value in named.items()
             if float(fields[name].default) != float(value)}
    assert wrong == {}, f"DOMAIN.md's default (first) is not the setting's (second): {wrong}"


def test_every_clinical_setting_is_in_domain_md() -> None:
    clinical = {name for name in Settings.model_fields
                if CLINICAL_UNIT.search(name) or name in CLINICAL_BY_NAME}
    assert len(clinical) >= 15
    missing = sorted(f"HAI_{name.upper()}" for name in clinical - set(named_in_domain()))
    assert missing == [], f"clinical settings DOMAIN.md does not name with their default: {missing}"
