"""MLLP (`0x0B … 0x1C 0x0D`) both ways, on the `hl7` package's asyncio streams: a client that
sends messages one at a time and waits for each ACK, and a server that answers every block."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from hl7.mllp import InvalidBlockError, open_hl7_connection, start_hl7_server

from services.hl7_bridge.domain import ENCODING

log = structlog.get_logger(__name__)

# a block larger than this is refused (an order is ~2 kB)
MAX_BLOCK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Reply:
    """The pharmacy's reply to one message: its text, or why there is none."""

    text: str | None
    error: str | None = None


class MllpClient:
    """Sends messages to the pharmacy system, each on a connection of its own, after the
    previous one's ACK (many MLLP peers close the connection after each answer)."""

    def __init__(self, host: str, port: int, *, ack_timeout_seconds: float,
                 connect_timeout_seconds: float) -> None:
        self.host, self.port = host, port
        self.ack_timeout_seconds = ack_timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds

    def exchange(self, messages: Sequence[str]) -> list[Reply]:
        """Send each message and wait for its reply, in order."""
        return asyncio.run(self._exchange(messages))

    async def _exchange(self, messages: Sequence[str]) -> list[Reply]:
        return [await self._one(message) for message in messages]

    async def _one(self, message: str) -> Reply:
        try:
            reader, writer = await asyncio.wait_for(
                open_hl7_connection(self.host, self.port, limit=MAX_BLOCK_BYTES, encoding=ENCODING),
                self.connect_timeout_seconds)
        except (OSError, TimeoutError) as exc:
            return Reply(None, f"cannot connect to the pharmacy at {self.host}:{self.port} "
                               f"({_describe(exc)})")
        try:
            writer.writeblock(message.encode(ENCODING))
            await writer.drain()
            block = await asyncio.wait_for(reader.readblock(), self.ack_timeout_seconds)
        except TimeoutError:
            return Reply(None, f"no ACK within {self.ack_timeout_seconds:g} s")
        except (OSError, EOFError, asyncio.IncompleteReadError, InvalidBlockError, ValueError) as exc:
            return Reply(None, f"connection to the pharmacy lost ({_describe(exc)})")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        return Reply(block.decode(ENCODING, errors="replace"))


def _describe(exc: BaseException) -> str:
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


Answerer = Callable[[bytes | None, str | None], bytes]


class MllpServer:
    """Listens on MLLP for the pharmacy's messages and answers each block with what `answer`
    returns; `answer(block, None)` for a block, `answer(None, why)` for a broken one (no MLLP
    start byte, too large), after which the connection goes on. `answer` runs in a worker
    thread (it may use the database) and must not raise."""

    def __init__(self, host: str, port: int, answer: Answerer) -> None:
        self.host, self.requested_port = host, port
        self.answer = answer
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hl7-answer")

    def start(self, timeout: float = 10.0) -> None:
        """Start listening in a thread of its own; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="hl7-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the MLLP listener did not start")
        if self._error is not None:
            raise RuntimeError(f"the MLLP listener did not start: {self._error}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - reported to start(), or logged
            self._error = exc
            self._ready.set()
            log.error("hl7.listener_failed", error=_describe(exc))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await start_hl7_server(self._client, self.host, self.requested_port,
                                        limit=MAX_BLOCK_BYTES, encoding=ENCODING)
        self.port = server.sockets[0].getsockname()[1]
        log.info("hl7.listening", host=self.host, port=self.port)
        self._ready.set()
        async with server:
            await self._stopped.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        try:
            while True:
                block: bytes | None
                why: str | None = None
                try:
                    block = await reader.readblock()  # type: ignore[attr-defined]
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the peer closed (between messages, or mid-block)
                except InvalidBlockError:
                    block, why = None, "no MLLP start block (0x0B)"
                except ValueError:
                    block, why = None, f"block over {MAX_BLOCK_BYTES} bytes"
                reply = await loop.run_in_executor(self._executor, self.answer, block, why)
                writer.writeblock(reply)  # type: ignore[attr-defined]
                await writer.drain()
        except ConnectionError:
            return
        except Exception as exc:  # noqa: BLE001 - one connection's failure never stops the listener
            log.error("hl7.connection_failed", peer=str(peer), error=_describe(exc))
        finally:
            writer.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=False)
