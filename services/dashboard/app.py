"""The infusion nurses' dashboard (placeholder until its issue lands)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """The dashboard app."""
    app = FastAPI(title="HAI dashboard")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
