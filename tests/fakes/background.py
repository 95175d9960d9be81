"""What every fake HTTP server here shares: an aiohttp app served from its own
event loop in a background thread, on a socket bound before serving (so the port
is known without a race), usable from sync tests, async tests and subprocesses.
`ThreadedHTTPServer` is the same lifecycle for the fakes built on http.server."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from aiohttp import web


class BackgroundServer:
    """Subclasses give `_build_app()` (and optionally a TLS context and stop hooks)."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def _build_app(self) -> web.Application:
        raise NotImplementedError

    def _ssl_context(self) -> ssl.SSLContext | None:
        return None

    def _before_stop(self) -> None:
        """Runs in the caller's thread before the server shuts down."""

    async def _on_stop(self) -> None:
        """Runs on the server's loop before its runner is cleaned up."""

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    async def _serve(self) -> None:
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock, ssl_context=self._ssl_context()).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        await self._on_stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._before_stop()
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ThreadedHTTPServer:
    """An http.server fake on 127.0.0.1 (a free port), served by a daemon thread.

    Subclasses give `_handler()`, the request handler class.
    """

    thread_name = "fake-http"
    # How often serve_forever checks for shutdown: stop() waits up to this long.
    poll_interval = 0.5

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(self.poll_interval,),
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def _address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
