"""The contract's words are spelled once, in shared/contracts/: a test that reads the source.

It walks the syntax tree of every module under services/ and shared/ (not shared/contracts/,
which defines the words, nor the Alembic revisions, which are history) and fails on:

1. an event type as a string: any string equal to a registered type, or shaped like one
   (`hai.<inventory|scheduling|alerts|pharmacy>.<entity>.<event>`), registered or not;
2. a vocabulary value (a member of one of the StrEnums of shared/contracts/vocabulary.py) where it
   stands for that vocabulary:
   - compared with (`==`, `!=`, `in`, `not in`), assigned to, passed as a keyword for, given as
     the default of, or used as the dict value of a *vocabulary field*: a name or attribute whose
     last word is status, severity, kind, fill_type, regimen or due_basis (`alert.status`,
     `from_status`, `row.get("fill_type")`, `{"status": ...}`, `status="firing"`);
   - inside `Literal[...]`;
   - among the arguments of a SQLAlchemy `.in_(...)`;
   - quoted in SQL inside a longer string (`"status = 'scheduled'"`);
   - two or more values of the same vocabulary in one tuple, list or set, or as all the keys of
     a dict (statuses spelled out, e.g. `("active", "paused")`, `{"requested": 0, ...}`).

3. in the dashboard's Jinja templates, a quoted vocabulary value inside a tag (`{% %}`, `{{ }}`)
   that names a vocabulary field, or two values of one vocabulary in one tag (the templates get
   the StrEnums as globals: `{% if a.status == AlertStatus.FIRING %}`).

Plain words elsewhere ("sent" as a key of a sweep's facts, "info" as a log level, "implanted"
as a field of a recall) are not the vocabulary and pass: the rule keys on the context, not on
the word. The unit tests below plant each kind of spelling and check that it is caught.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

import pytest

from shared.contracts import vocabulary
from shared.contracts.vocabulary import EventType

ROOT = Path(__file__).resolve().parents[3]
SCANNED = ("services", "shared")
EXEMPT = ("shared/contracts/",)

EVENT_TYPES = {t.value for t in EventType}
EVENT_TYPE_SHAPE = re.compile(r"^hai\.(inventory|scheduling|alerts|pharmacy)\.[a-z_]+\.[a-z_]+$")
VOCABULARIES: dict[str, set[str]] = {
    name: {m.value for m in enum}
    for name, enum in vars(vocabulary).items()
    if isinstance(enum, type) and issubclass(enum, StrEnum) and enum is not EventType
    and enum.__module__ == vocabulary.__name__
}
VALUES = set().union(*VOCABULARIES.values())
FIELD = re.compile(r"(^|_)(status|severity|kind|fill_type|regimen|due_basis)$")
QUOTED = re.compile(r"'([a-z_]+)'")


def _name(node: ast.AST) -> str | None:
    """The field a node reads: `x`, `a.b.x`, `row.get("x")`, `row["x"]`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "get" and node.args and _const(node.args[0]) is not None:
        return _const(node.args[0])
    if isinstance(node, ast.Subscript) and _const(node.slice) is not None:
        return _const(node.slice)
    return None


def _const(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_field(node: ast.AST | None) -> bool:
    name = _name(node) if node is not None else None
    return name is not None and FIELD.search(name) is not None


def _values_in(node: ast.AST) -> list[str]:
    """The vocabulary values a node spells: itself, the elements of a tuple/list/set, the
    operands of `a or "x"` and `"x" if c else "y"`."""
    if (value := _const(node)) is not None:
        return [value] if value in VALUES else []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts for v in _values_in(e)]
    if isinstance(node, ast.BoolOp):
        return [v for e in node.values for v in _values_in(e)]
    if isinstance(node, ast.IfExp):
        return [*_values_in(node.body), *_values_in(node.orelse)]
    return []


def violations(source: str, filename: str = "<planted>") -> list[str]:
    """Every spelling of the contract's words in `source`, as `file:line: what`."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str]] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append((getattr(node, "lineno", 0), what))

    for node in ast.walk(tree):
        value = _const(node)
        if value is not None:
            if value in EVENT_TYPES or EVENT_TYPE_SHAPE.match(value):
                flag(node, f"event type {value!r}")
            elif value not in VALUES:
                quoted = [q for q in QUOTED.findall(value) if q in VALUES]
                if quoted:
                    flag(node, f"SQL spelling {', '.join(quoted)}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_field(s) for s in sides):
                for side in sides:
                    for v in _values_in(side):
                        flag(node, f"{v!r} compared with a vocabulary field")
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                pairs: list[tuple[ast.AST, ast.AST | None]] = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for tgt, val in pairs:
                    if val is not None and _is_field(tgt):
                        for word in _values_in(val):
                            flag(node, f"{word!r} assigned to {_name(tgt)}")
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg and FIELD.search(kw.arg):
                    for word in _values_in(kw.value):
                        flag(node, f"{word!r} passed as {kw.arg}")
            if isinstance(node.func, ast.Attribute) and node.func.attr == "in_":
                for in_arg in node.args:
                    for word in _values_in(in_arg):
                        flag(node, f"{word!r} in a SQL IN list")
        elif isinstance(node, ast.Dict):
            keyed = [_const(k) for k in node.keys if k is not None]
            for dict_key, dict_value in zip(node.keys, node.values, strict=True):
                if dict_key is not None and (key := _const(dict_key)) and FIELD.search(key):
                    for word in _values_in(dict_value):
                        flag(node, f"{word!r} as the {key} of a dict")
            if None not in keyed:  # a mapping over a vocabulary: every key one of its values
                _flag_lists(node, [k for k in keyed if k is not None], flag, whole=True)
        elif isinstance(node, ast.arguments):
            args = [*node.posonlyargs, *node.args]
            for param, default in zip(args[len(args) - len(node.defaults):], node.defaults,
                                      strict=True):
                if FIELD.search(param.arg):
                    for word in _values_in(default):
                        flag(node, f"{word!r} as the default of {param.arg}")
            for param, kw_default in zip(node.kwonlyargs, node.kw_defaults, strict=True):
                if kw_default is not None and FIELD.search(param.arg):
                    for word in _values_in(kw_default):
                        flag(node, f"{word!r} as the default of {param.arg}")
        elif isinstance(node, ast.Subscript) and _name(node.value) == "Literal":
            for word in _values_in(node.slice):
                flag(node, f"{word!r} in a Literal")
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            _flag_lists(node, [c for e in node.elts if (c := _const(e)) is not None], flag)
    return sorted({f"{filename}:{line}: {what}" for line, what in found})


def _flag_lists(node: ast.AST, strings: list[str], flag: Callable[[ast.AST, str], None], *,
                whole: bool = False) -> None:
    for name, values in VOCABULARIES.items():
        spelled = [s for s in strings if s in values]
        if len(spelled) >= 2 and (not whole or len(spelled) == len(strings)):
            flag(node, f"{name} values {', '.join(spelled)} spelled out")


JINJA_TAG = re.compile(r"\{[%{](.*?)[%}]\}", re.S)
JINJA_QUOTED = re.compile(r"'([a-z_]+)'|\"([a-z_]+)\"")
JINJA_FIELD = re.compile(r"(^|[^a-z_])(status|severity|kind|fill_type|regimen|due_basis)([^a-z_]|$)")


def template_violations(source: str, filename: str = "<planted>") -> list[str]:
    """Every spelling of the vocabulary in a Jinja template's tags."""
    found = []
    for tag in JINJA_TAG.finditer(source):
        words = [a or b for a, b in JINJA_QUOTED.findall(tag.group(1))]
        spelled = [w for w in words if w in VALUES]
        together = any(len(set(spelled) & values) >= 2 for values in VOCABULARIES.values())
        if spelled and (JINJA_FIELD.search(tag.group(1)) or together):
            line = source.count("\n", 0, tag.start()) + 1
            found.append(f"{filename}:{line}: {', '.join(spelled)} in {tag.group(0)[:60]!r}")
    return found


def _modules() -> Iterator[tuple[str, str]]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(EXEMPT) or "/migrations/versions/" in rel:
                continue
            yield rel, path.read_text(encoding="utf-8")


def test_the_contracts_words_are_spelled_only_in_shared_contracts() -> None:
    found = [v for rel, source in _modules() for v in violations(source, rel)]
    assert not found, ("spelled outside shared/contracts/ (use the registry's EventType and the "
                       "vocabulary's StrEnums):\n" + "\n".join(found))


def test_the_templates_use_the_vocabulary() -> None:
    templates = sorted((ROOT / "services").rglob("templates/*.html"))
    assert templates
    found = [v for path in templates
             for v in template_violations(path.read_text(encoding="utf-8"),
                                          path.relative_to(ROOT).as_posix())]
    assert not found, "spelled in a template (use the StrEnum globals):\n" + "\n".join(found)


@pytest.mark.parametrize(("planted", "caught"), [
    ("{% if a.status == 'firing' %}", True),
    ("{{ 'row' if p.status != \"implanted\" else '' }}", True),
    ("{% for v in ['firing', 'resolved'] %}", True),
    ("{% set st = r.status or 'recorded' %}", True),
    ("{% if a.status == AlertStatus.FIRING %}", False),
    ("{% if status == 'open' %}", False),
    ("<p>a firing alert</p>", False),
])
def test_a_planted_template_spelling_is_caught(planted: str, caught: bool) -> None:
    assert bool(template_violations(planted)) is caught, planted


def test_the_scan_reads_the_services() -> None:
    scanned = {rel for rel, _ in _modules()}
    assert "services/alerts/paging.py" in scanned and "shared/db.py" in scanned
    assert not any(rel.startswith("shared/contracts/") for rel in scanned)


@pytest.mark.parametrize("planted", [
    'uow.publish_raw("hai.scheduling.reservoir.near_empty", data)',
    'T = "hai.alerts.alert.silenced"',  # shaped like a type, not registered
    'if alert.status != "firing": pass',
    'if "firing" == alert.status: pass',
    'ok = row.get("fill_type") == "chemo"',
    'ok = a["status"] in ("delivered", "cancelled")',
    'alert.status = "acknowledged"',
    'data = Model(due_basis=appt.due_basis or "interval")',
    'n.severity = "critical" if bad else level',
    'appt.status, appt.updated_at = "cancelled", now',
    'status: str = "recorded"',
    'stmt.values(status="completed")',
    'body = {"status": "requested"}',
    'def f(due_basis: str = "interval"): pass',
    'def f(*, severity="critical"): pass',
    'Kind = Literal["chemo", "saline"]',
    'q = select(A).where(A.status.in_(["requested", "accepted"]))',
    'Index("ix", postgresql_where=text("status = \'scheduled\' AND x IS NULL"))',
    'OPEN = ("active", "paused")',
    'RANK = {"requested": 0, "accepted": 1}',
    'TERMINAL = frozenset({"delivered", "rejected"})',
])
def test_a_planted_spelling_is_caught(planted: str) -> None:
    assert violations(planted), planted


@pytest.mark.parametrize("innocent", [
    'facts = {"sent": 0, "claim_lost": 0}',  # a counter's key, not a status
    'log.info("x", level="info")',
    'changes = {"reason": r, "quarantined": q, "implanted": i}',  # a recall's fields
    'timeline(uow, alert, actor, "acknowledged", {})',  # a timeline action
    'if alert.status != AlertStatus.FIRING: pass',
    'channel = "webhook"',
    '"""Only a firing alert can be acknowledged (`hai.alerts.alert.acknowledged`)."""',
])
def test_plain_words_pass(innocent: str) -> None:
    assert not violations(innocent), innocent
