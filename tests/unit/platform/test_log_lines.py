"""Every line a process writes is one JSON object a log collector can read, whoever wrote it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

REQUIRED = {"time", "level", "service", "logger", "event"}

# ours, and the libraries' own loggers, with the quotes, newlines and exceptions that broke the
# old hand-written '{"event":"%(message)s"}' format; one line from a thread of its own
SCRIPT = textwrap.dedent('''
    import logging, threading
    import structlog
    from shared.logging import configure_logging

    configure_logging("INFO", True, "scheduling")
    structlog.get_logger("services.scheduling.service").info("refill.recorded", refill_id="r-1")
    logging.getLogger("uvicorn.error").info('Started server process [%d]', 42)
    logging.getLogger("alembic.runtime.migration").info('Running upgrade  -> "abc", initial')
    logging.getLogger("apscheduler.scheduler").warning('Job "sweep" missed by 0:00:01')
    logging.getLogger("pika.adapters").error("Connection\\nreset: %s", 'peer said "bye"')
    logging.getLogger("httpx").warning('HTTP Request: POST http://x/v1 "HTTP/1.1 201 Created"')
    logging.getLogger("httpx").info('HTTP Request: GET http://x/v1/patients/MRN-SECRET "200"')
    try:
        raise ValueError('bad "value"')
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    t = threading.Thread(target=lambda: structlog.get_logger("shared.messaging.consumer")
                         .warning("consumer.retry", attempts=2))
    t.start(); t.join()
''')


def test_every_line_is_a_json_object_with_time_level_service_logger_and_event() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=True)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # one unreadable line fails here
    assert all(isinstance(r, dict) and REQUIRED <= r.keys() for r in records), records
    assert {r["service"] for r in records} == {"scheduling"}
    by_logger = {r["logger"]: r for r in records}
    assert set(by_logger) == {"services.scheduling.service", "uvicorn.error",
                              "alembic.runtime.migration", "apscheduler.scheduler",
                              "pika.adapters", "httpx", "shared.messaging.consumer"}
    assert by_logger["pika.adapters"]["event"] == 'Connection\nreset: peer said "bye"'
    assert by_logger["uvicorn.error"]["level"] == "error"
    assert 'ValueError: bad "value"' in by_logger["uvicorn.error"]["exception"]
    assert by_logger["services.scheduling.service"]["refill_id"] == "r-1"
    assert "MRN-SECRET" not in done.stderr  # httpx's INFO request lines name paths: kept off
    assert len(records) == 8
