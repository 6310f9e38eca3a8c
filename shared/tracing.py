"""Distributed tracing (OpenTelemetry), off unless `HAI_OTLP_ENDPOINT` names a collector.

One trace runs from an HTTP request through the outbox (the W3C `traceparent` is stored in
each CloudEvent, the CloudEvents distributed-tracing extension), the broker, the consumer that
handles the event (its span's parent is restored from the event) and the page it sends (the
notification keeps the consumer's `traceparent`; a webhook page carries it in its header).

Off, every function here returns at once: no provider, no span, nothing added to an event.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import Engine

TRACEPARENT = "traceparent"
_provider: TracerProvider | None = None
_lock = threading.Lock()


def enabled() -> bool:
    """True when spans are recorded (an OTLP endpoint is set, or a test installed a provider)."""
    return _provider is not None


def use_provider(provider: TracerProvider | None) -> None:
    """Record spans with this provider from now on (None: tracing off)."""
    global _provider
    with _lock:
        _provider = provider


def configure(endpoint: str | None, service: str) -> None:
    """Export spans over OTLP/HTTP to `endpoint` (a collector's base URL), once per process."""
    if not endpoint or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"hai-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    use_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)


def instrument_app(app: FastAPI) -> None:
    """A server span for every request of this app (when tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider,
                                       excluded_urls="healthz,readyz,metrics")


def instrument_engine(engine: Engine) -> None:
    """A span for every statement on this engine (when tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    # the instrumentor's own instrument() is once per process (and refuses SQLAlchemy 2.1,
    # whose engine events are unchanged): its per-engine tracer is attached to each engine
    usage = get_meter("hai").create_up_down_counter("db.client.connections.usage")
    EngineTracer(_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine, usage)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None (tracing off, or no span)."""
    if _provider is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def span(name: str, *, parent: str | None = None, kind: str = "internal",
         **attributes: Any) -> Iterator[None]:
    """A span (child of the `parent` traceparent when given, else of the current span)."""
    if _provider is None:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = (TraceContextTextMapPropagator().extract({TRACEPARENT: parent})
               if parent else None)
    tracer = _provider.get_tracer("hai")
    with tracer.start_as_current_span(
            name, context=context, kind=getattr(trace.SpanKind, kind.upper()),
            attributes={k: v for k, v in attributes.items() if v is not None}):
        yield


def event_traceparent(event: Any) -> str | None:
    """The `traceparent` extension attribute of a CloudEvent, if it carries one."""
    extra = getattr(event, "model_extra", None) or {}
    value = extra.get(TRACEPARENT)
    return value if isinstance(value, str) else None
