"""Structured JSON logs that carry ids, never patient names, birth dates or MRNs."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import structlog

from shared.dberrors import is_db_error, safe_db_error

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


def safe_error(exc: BaseException, limit: int = 600) -> str:
    """`Type: message` of an exception, where a validation error names its fields and never
    their values (pydantic and FastAPI put the rejected input, often a patient, in the text),
    and a database error its SQLSTATE and the names it concerns (its text carries values)."""
    if is_db_error(exc):
        return safe_db_error(exc)[:limit]
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = errors()
        except Exception:  # noqa: BLE001 - an errors() of another shape: fall back to the type
            found = None
        if isinstance(found, list | tuple):
            fields = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())) or '?'}: {e.get('msg', '')}"
                for e in found if isinstance(e, dict))
            return f"{type(exc).__name__}: {fields}"[:limit]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:limit]


def format_exc_info_safely(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Render `exc_info` as a traceback whose exception lines come from `safe_error`."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    if exc is None:
        return event_dict
    event_dict["exception"] = safe_traceback(exc)
    return event_dict


def safe_traceback(exc: BaseException) -> str:
    """A traceback of the exception and its causes, each exception line from `safe_error`."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.insert(0, "".join(traceback.format_tb(current.__traceback__))
                     + safe_error(current, limit=2000) + "\n")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


class SafeFormatter(logging.Formatter):
    """The stdlib logs' formatter (uvicorn, SQLAlchemy's pool, ...): tracebacks via `safe_traceback`."""

    def format(self, record: logging.LogRecord) -> str:
        # another handler may have cached its own rendering of the traceback on the record
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        exc = ei[1] if isinstance(ei, tuple) else None
        return super().formatException(ei) if exc is None else safe_traceback(exc).rstrip("\n")


def log_processors(json_output: bool = True) -> list[Any]:
    """The structlog processors of every process: redaction, safe tracebacks, then rendering."""
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=False))
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_patient_data,
        format_exc_info_safely,
        renderer,
    ]


STDLIB_FORMAT = '{"level":"%(levelname)s","logger":"%(name)s","event":"%(message)s"}'


_configured = False


def configure_logging(level: str = "INFO", json_output: bool = True, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    structlog.configure(
        processors=log_processors(json_output),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=STDLIB_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SafeFormatter(STDLIB_FORMAT))
    # uvicorn's access log prints full URLs, which may carry an MRN in a query: keep it off
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
