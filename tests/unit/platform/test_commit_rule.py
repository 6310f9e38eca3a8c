"""The commit rule (`shared.db.UnitOfWork`): whoever opens a unit of work commits it; whoever is
handed one never does. Under services/, a `.commit()` is allowed only on a unit of work the same
function opened (`with <factory>() as uow:`): the jobs' steps, the alerts pager's steps, the
HL7 bridge's consumer and listener. Service functions, handlers and routes are handed theirs
(by `shared.web.get_uow`, `Idempotency.run` or the consumer), and routes never open one."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NEVER_COMMIT = {"routes.py", "service.py"}  # modules that are handed their unit of work


@dataclass(frozen=True)
class Commit:
    module: str
    function: str  # "" at module level
    line: int
    opened_here: bool  # the committed name is bound by a `with <call>() as name` of this function


def _opened(function: ast.AST) -> set[str]:
    """Names bound by `with <call>(...) as name` directly in this function (not nested ones)."""
    names: set[str] = set()
    for node in _own_nodes(function):
        if isinstance(node, ast.With):
            for item in node.items:
                if isinstance(item.context_expr, ast.Call) and isinstance(item.optional_vars, ast.Name):
                    names.add(item.optional_vars.id)
    return names


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(function):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield child
        yield from _own_nodes(child)


def commits(tree: ast.Module, module: str) -> Iterator[Commit]:
    """Every `.commit()` call of a module, with its function and whether it opened the uow."""
    scopes: list[tuple[str, ast.AST]] = [("", tree)]
    scopes += [(node.name, node) for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    for name, scope in scopes:
        opened = _opened(scope)
        for node in _own_nodes(scope):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "commit"):
                target = node.func.value
                yield Commit(module, name, node.lineno,
                             isinstance(target, ast.Name) and target.id in opened)


def all_commits() -> list[Commit]:
    found: list[Commit] = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = path.relative_to(ROOT).as_posix()
        found += commits(ast.parse(path.read_text(), filename=module), module)
    return found


def offenders(found: list[Commit]) -> list[str]:
    return [f"{c.module}:{c.line} in {c.function or '<module>'}()" for c in found
            if not c.opened_here or Path(c.module).name in NEVER_COMMIT]


def test_under_services_only_who_opened_a_unit_of_work_commits_it() -> None:
    bad = offenders(all_commits())
    assert bad == [], ("a function handed a unit of work stages changes, its edge commits them "
                       f"(shared/db.py, UnitOfWork): {bad}")


def test_the_known_edges_are_seen_as_edges() -> None:
    """The walk sees the commits it must allow (so the test above is not passing by blindness)."""
    edges = {(c.module, c.function) for c in all_commits() if c.opened_here}
    assert {("services/alerts/paging.py", "claim_due"), ("services/alerts/paging.py", "record_results"),
            ("services/alerts/jobs.py", "watchdog"), ("services/scheduling/jobs.py", "sweep"),
            } <= edges, sorted(edges)


SOURCE = '''
def handed(uow):
    uow.commit()

def opens(factory):
    with factory() as uow:
        uow.commit()

def opens_then_nested(factory):
    with factory() as uow:
        def inner():
            uow.commit()
        inner()
'''


def test_the_walk_tells_a_handed_unit_of_work_from_an_opened_one() -> None:
    found = list(commits(ast.parse(SOURCE), "services/x/handlers.py"))
    assert [(c.function, c.opened_here) for c in found] == [
        ("handed", False), ("opens", True), ("inner", False)]
    assert offenders(found) == ["services/x/handlers.py:3 in handed()",
                                "services/x/handlers.py:12 in inner()"]
    in_routes = list(commits(ast.parse(SOURCE), "services/x/routes.py"))
    assert len(offenders(in_routes)) == 3  # a route never commits, even a unit of work it opened
