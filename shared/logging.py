"""Structured JSON logs that carry ids, never patient names, birth dates or MRNs."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# keys whose values identify a patient: dropped from every log line as a safety net
PATIENT_KEYS = frozenset({
    "mrn", "patient_mrn", "given_name", "family_name", "birth_date", "name", "patient",
    "address", "phone", "email_address",
})


def redact_patient_data(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace values of patient-identifying keys with a marker."""
    for key in list(event_dict):
        if key in PATIENT_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


_configured = False


def configure_logging(level: str = "INFO", json_output: bool = True, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=False))
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_patient_data,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format='{"level":"%(levelname)s","logger":"%(name)s","event":"%(message)s"}')
    # uvicorn's access log prints full URLs, which may carry an MRN in a query: keep it off
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
