"""docs/openapi/ holds each service's OpenAPI document as the app serves it (`make docs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import openapi
from shared.settings import SERVICES
from tests.helpers import start_service
from tests.helpers import test_settings as make_settings


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_openapi_document_is_current(service: str) -> None:
    path = openapi.path_of(service)
    assert path.is_file(), f"{path} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == openapi.render(openapi.document(service)), (
        f"{path} is not the app's OpenAPI document: run `make docs` and commit the result")


def test_docs_openapi_holds_a_document_per_service_and_nothing_else() -> None:
    assert sorted(p.name for p in openapi.DOCS.iterdir()) == sorted(f"{s}.json" for s in SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_the_exported_document_is_the_one_a_running_service_serves(service: str,
                                                                   tmp_path: Path) -> None:
    # the export builds the app on defaults and an empty in-memory database; a service started
    # as the tests start it, on its migrated database, serves the same document
    served = start_service(service, make_settings(tmp_path)).client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == openapi.document(service)


def test_check_names_a_stale_document(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for service in SERVICES:
        (tmp_path / f"{service}.json").write_text(openapi.render(openapi.document(service)))
    monkeypatch.setattr(openapi, "DOCS", tmp_path)
    assert openapi.main(["--check"]) == 0
    (tmp_path / "scheduling.json").write_text("{}\n")
    assert openapi.main(["--check"]) == 1
    assert "scheduling.json is not current" in capsys.readouterr().err
