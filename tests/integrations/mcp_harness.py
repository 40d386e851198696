"""MCP servers and clients for the tests: real FastMCP servers, real tokens, real MCP clients.

* :class:`Issuer`: an RSA key pair signing JWTs and the ``JWTVerifier`` a server checks them with.
* :func:`served`: a server's streamable HTTP app in-process (``asgi_server``: the whole HTTP stack,
  bearer auth included, no socket), for tests that build a server per case.
* :class:`LiveServer`: a server on a real socket on 127.0.0.1 (``run_server_async``) in an event loop
  of its own thread, started once per test module; tests call into it with :meth:`LiveServer.run`.
* :class:`RecordingTool`: a FastMCP tool declared by a plain JSON Schema, recording what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio.from_thread
import mcp_types as mt
from fastmcp import Client, FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair, StaticTokenVerifier
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.tests import asgi_server, run_server_async, temporary_settings
from pydantic import PrivateAttr

T = TypeVar("T")
ISSUER = "https://idp.example.test"
AUDIENCE = "assistant-mcp"


class Issuer:
    """An identity provider: signs access tokens; ``verifier`` is what the server is given as ``auth=``."""

    def __init__(self) -> None:
        self.keys = RSAKeyPair.generate()
        self.verifier = JWTVerifier(public_key=self.keys.public_key, issuer=ISSUER, audience=AUDIENCE)

    def token(self, subject: str, **claims: Any) -> str:
        return self.keys.create_token(subject=subject, issuer=ISSUER, audience=AUDIENCE,
                                      additional_claims=claims or None)

    def foreign_token(self, subject: str) -> str:
        """A well-formed token signed by another key: the server must reject it."""
        return RSAKeyPair.generate().create_token(subject=subject, issuer=ISSUER, audience=AUDIENCE)


def static_tokens(*users: str) -> StaticTokenVerifier:
    """Bearer ``t-<user>`` is ``<user>`` (client id ``app``): for servers built per test case."""
    return StaticTokenVerifier({f"t-{user}": {"client_id": "app", "sub": user} for user in users})


@contextlib.asynccontextmanager
async def served(server: FastMCP, token: str | None = None, *,
                 mode: str = "auto") -> AsyncIterator[Client[Any]]:
    """A fastmcp Client connected to ``server`` over its in-process streamable HTTP app."""
    async with asgi_server(server) as running, running.client(auth=token, mode=mode) as client:
        yield client


def call(server: FastMCP, token: str | None, name: str, arguments: dict[str, Any], *,
         mode: str = "auto") -> mt.CallToolResult:
    """One ``tools/call`` over HTTP, from synchronous test code; the raw MCP result."""
    async def run() -> mt.CallToolResult:
        async with served(server, token, mode=mode) as client:
            return await client.call_tool_mcp(name, arguments)

    return asyncio.run(run())


class LiveServer:
    """A FastMCP server on a real 127.0.0.1 socket, served from an event loop in a thread of its own."""

    def __init__(self, server: FastMCP) -> None:
        self.server = server
        self.url = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LiveServer:
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self.portal = portal
        self.url = self._stack.enter_context(portal.wrap_async_context_manager(run_server_async(self.server)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` (an async function of the test) in the server's loop, and return its result."""
        return self.portal.call(work)

    def client(self, token: str | None = None, **options: Any) -> Client[Any]:
        return Client(self.url, auth=token, **options)


class RecordingTool(Tool):
    """A tool known only by its JSON Schema (as a proxied or hand-written tool is); records its arguments."""

    _received: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        self._received.append(arguments)
        return ToolResult(content=[mt.TextContent(type="text", text="done")])


def recording_tool(name: str, schema: dict[str, Any], received: list[dict[str, Any]]) -> RecordingTool:
    """The tool; what it receives is appended to ``received``."""
    tool = RecordingTool(name=name, description="Recorded.", parameters=schema)
    tool._received = received
    return tool


def quiet_uvicorn() -> contextlib.AbstractContextManager[None]:
    """No request log, and no CancelledError traceback from uvicorn's lifespan when the test stops it."""
    return temporary_settings(log_level="CRITICAL")
