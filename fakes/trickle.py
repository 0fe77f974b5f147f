"""A receiver on 127.0.0.1 that never finishes its answer: it reads a request's
headers, then sends its response one byte every `every` seconds, for as long as
the client stays. A client whose read timeout is per byte (requests, urllib3)
never times out on it; only a deadline on the whole call ends the wait.

With `headers_first` (the default) the status line and headers go out at once
and the body trickles (`200 OK`, a body that never ends); without, the status
line itself trickles, so not even the status is ever known. Any path is
accepted: `json://127.0.0.1:<port>/x` (Apprise) and `url` (a webhook) both work.
`wait_requests()` returns once that many requests have arrived; `stop()` hangs
up on every client, which ends the calls stuck on it.
"""

from __future__ import annotations

import asyncio
import contextlib

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"


class TrickleServer:
    def __init__(self, every: float = 2.0, headers_first: bool = True) -> None:
        self.every = every
        self.headers_first = headers_first
        self.requests = 0  # requests whose headers arrived
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/trickle"

    async def wait_requests(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.requests >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            async with self._changed:
                self.requests += 1
                self._changed.notify_all()
            head = HEAD if self.headers_first else HEAD[:1]
            rest = b"" if self.headers_first else HEAD[1:]
            writer.write(head)
            while not self._closing.is_set():
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.every)
                writer.write(rest[:1] or b" ")  # the next byte of the headers, else of the body
                rest = rest[1:]
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up
        finally:
            writer.transport.abort()  # a client still waiting gets a reset and gives up

    async def start(self, port: int = 0) -> TrickleServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Hang up on every client (each stuck call then ends) and stop listening."""
        if self._server is None:
            return
        self._closing.set()
        self._server.close()
        await self._server.wait_closed()  # 3.11: returns once the listener is closed
        self._server = None
