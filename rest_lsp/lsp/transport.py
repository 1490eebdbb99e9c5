"""The server's transports, stdio and TCP, over rest-lsp's own framing (``rest_lsp.lsp.framing``).

pygls's reader is not used: ``serve`` reads the bytes, checks the framing, the JSON-RPC envelope
and the lifecycle, and hands valid messages to pygls's protocol through the server's ``edge``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from rest_lsp.lsp.framing import serve

log = logging.getLogger(__name__)


class Transports:
    """Mixin of ``RestLanguageServer``: ``start_io`` (via pygls) and ``start_tcp`` on our framing."""

    def _start_io_async(self, stdin=None, stdout=None) -> None:
        """Serve LSP over stdin/stdout until the client closes stdin or sends ``exit``."""
        from pygls.io_ import StdoutWriter

        self._stop_event = threading.Event()
        stdin = stdin or sys.stdin.buffer
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-lsp-stdin")
        read = getattr(stdin, "read1", stdin.read)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            await serve(self._stop_event, lambda: loop.run_in_executor(reader, read, 65536), self.edge)

        try:
            asyncio.run(main())
        except BrokenPipeError:
            log.error("the client closed the connection; shutting down")
        except SystemExit as exc:  # ``exit``: 0 after ``shutdown``, 1 without (LSP)
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            pass
        finally:
            reader.shutdown(wait=False)
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one LSP client at a time on ``host:port`` (checked loopback by ``serve``)."""
        self._stop_event = stop = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)  # type: ignore[arg-type]
            await serve(stop, lambda: reader.read(65536), self.edge)
            self.shutdown()

        async def main() -> None:
            self._server = await asyncio.start_server(connection, host, port)
            async with self._server:
                await self._server.serve_forever()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
