"""Structured JSON logs that carry ids, never patient names, birth dates or MRNs."""

from __future__ import annotations

import logging
import sys
import traceback
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


def safe_error(exc: BaseException, limit: int = 600) -> str:
    """`Type: message` of an exception, where a validation error names its fields and never
    their values (pydantic and FastAPI put the rejected input, often a patient, in the text)."""
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
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.insert(0, "".join(traceback.format_tb(current.__traceback__))
                     + safe_error(current, limit=2000) + "\n")
        current = current.__cause__ or current.__context__
    event_dict["exception"] = "\n".join(parts)
    return event_dict


class _NamedPrintLogger(structlog.PrintLogger):
    """structlog's fast print logger, knowing the name it was asked for (`get_logger(__name__)`)."""

    def __init__(self, name: str) -> None:
        super().__init__(file=sys.stderr)
        self.name = name


def _named_print_logger(*args: Any) -> _NamedPrintLogger:
    return _NamedPrintLogger(str(args[0]) if args else "hai")


def add_logger_name(logger: Any, _: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The `logger` field: the module's name for our lines, the stdlib logger's for the others."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    else:
        event_dict.setdefault("logger", getattr(logger, "name", "hai"))
    return event_dict


_configured = False
_service = "hai"


def add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The `service` field on every line, from any thread (a new thread starts without the
    main thread's context variables)."""
    event_dict.setdefault("service", _service)
    return event_dict


def configure_logging(level: str = "INFO", json_output: bool = True, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process.

    Every line is one JSON object with `time`, `level`, `service`, `logger` and `event`: ours
    straight from structlog, and those of uvicorn, httpx, pika, APScheduler and Alembic through
    the same processors (a stdlib handler with structlog's ProcessorFormatter)."""
    global _configured, _service
    if _configured:
        return
    _configured = True
    _service = service or "hai"
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        redact_patient_data,
        format_exc_info_safely,
    ]
    structlog.configure(
        processors=[*shared_processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_named_print_logger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log and httpx's request lines print full URLs, which may carry an MRN
    # (a patient's path, a query): keep them off
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "pika", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
