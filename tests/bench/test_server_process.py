"""The server benchmark's client side: a server that dies while starting is reported at once."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import pytest

from rest_lsp.bench.server_process import Server
from rest_lsp.errors import RestLspError


def test_a_server_that_exits_before_it_is_ready_is_reported_with_its_status_and_stderr():
    async def scenario() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stderr.write('Fatal Python error: Segmentation fault'); sys.exit(3)",
            stderr=asyncio.subprocess.PIPE)
        await process.wait()
        server = Server("rest", {}, Path("."), {})
        server.client = types.SimpleNamespace(_server=process)
        with pytest.raises(RestLspError) as caught:
            await asyncio.wait_for(server._until(server.ready, 600, "loaded its model and index"), timeout=30)
        assert "status 3" in str(caught.value) and "Segmentation fault" in str(caught.value)

    asyncio.run(scenario())


def test_a_server_that_becomes_ready_is_waited_for():
    async def scenario() -> None:
        # a server that runs until its stdin closes
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", "import sys; sys.stdin.read()",
                                                       stdin=asyncio.subprocess.PIPE)
        server = Server("rest", {}, Path("."), {})
        server.client = types.SimpleNamespace(_server=process)
        asyncio.get_running_loop().call_later(0.2, server.ready.set)
        try:
            await asyncio.wait_for(server._until(server.ready, 600, "loaded"), timeout=30)
            assert server.ready.is_set() and process.returncode is None
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), timeout=30)

    asyncio.run(scenario())
