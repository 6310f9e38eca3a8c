"""The commit rule (`shared.db.UnitOfWork`): code under services/ that is handed a unit of work
never commits it; only the edges that open one do (jobs, the alerts pager)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# The edges under services/ that open their own unit of work and commit it. Routes, consumers'
# handlers and service functions are not among them: their commit is the request's
# (`shared.web.get_uow`, `Idempotency.run`) or the consumer's (`shared.messaging.consumer`).
EDGE_MODULES = {"jobs.py"}
EDGE_FUNCTIONS = {
    ("services/alerts/paging.py", "escalate_due"),
    ("services/alerts/paging.py", "claim_due"),
    ("services/alerts/paging.py", "record_result"),
}


def commits(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(enclosing function, line) of every `.commit()` call in a module ("" at module level)."""

    def walk(node: ast.AST, function: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            name = (child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                    else function)
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr == "commit"):
                yield function, child.lineno
            yield from walk(child, name)

    yield from walk(tree, "")


def commit_sites() -> dict[tuple[str, str], list[int]]:
    sites: dict[tuple[str, str], list[int]] = {}
    for path in sorted((ROOT / "services").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        relative = path.relative_to(ROOT).as_posix()
        for function, line in commits(ast.parse(path.read_text(), filename=relative)):
            sites.setdefault((relative, function), []).append(line)
    return sites


def test_only_the_edges_under_services_commit() -> None:
    offenders = {f"{path}:{lines} in {function or '<module>'}()"
                 for (path, function), lines in commit_sites().items()
                 if Path(path).name not in EDGE_MODULES and (path, function) not in EDGE_FUNCTIONS}
    assert offenders == set(), (
        "a function handed a unit of work stages changes, its edge commits them "
        f"(shared/db.py, UnitOfWork): {sorted(offenders)}")


def test_the_named_edges_exist_and_commit() -> None:
    """The list of edges above stays true: each one named still commits."""
    sites = commit_sites()
    assert EDGE_FUNCTIONS <= set(sites), sorted(EDGE_FUNCTIONS - set(sites))


def test_the_walk_finds_a_commit_in_a_nested_function() -> None:
    tree = ast.parse("def outer(uow):\n    def inner():\n        uow.commit()\n    inner()\n")
    assert list(commits(tree)) == [("inner", 3)]
