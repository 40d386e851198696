"""The web application of ``agentauthz explore``: Starlette routes, the token gate, the templates.

Every request must carry the token printed with the URL, as the ``token``
query parameter or the cookie the first such request sets; anything else is
answered 403 without reading the store. Pages are rendered on the server by
Jinja2 with autoescaping on, so a policy, an entity id or an audit line
holding ``<script>`` shows as text; a Content-Security-Policy that allows only
the page's own script and style file is a second wall behind the escaping.
Nothing is written to disk.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentauthz._errors import PolicyError
from agentauthz.cli._common import UsageError
from agentauthz.cli._explore_views import (
    AuditFilter,
    BenchForm,
    action_choices,
    decide_bench,
    entity_choices,
    places,
    read_audit,
    store_file,
    store_health,
    who_can,
)
from agentauthz.cli._results import store_summary
from agentauthz.policy._store import PolicyStore

__all__ = ["COOKIE", "create_app"]

ASSETS = Path(__file__).parent / "explore_assets"
#: The cookie that carries the token after the first request.
COOKIE = "agentauthz_explore"
#: Most events the log page lists at once (the counts above it cover them all).
MAX_ROWS = 1000
#: Largest form body read (a scratch edit of a policy file fits well within it).
MAX_BODY = 2 * 1024 * 1024
_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


class TokenGate:
    """ASGI middleware: 403 unless the request carries the token; security headers on every answer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token", "")
        given = from_query or request.cookies.get(COOKIE, "")
        allowed = hmac.compare_digest(given.encode(), self.token)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if allowed and from_query:
                    headers.append("set-cookie", f"{COOKIE}={from_query}; HttpOnly; SameSite=Strict; Path=/")
            await send(message)

        if not allowed:
            response = PlainTextResponse(
                "403 Forbidden: open the URL that `agentauthz explore` printed (it carries the token).\n",
                status_code=403)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def create_app(root: Path, audit: Sequence[Path], token: str) -> ASGIApp:
    """The explorer of the store at ``root`` with the audit files ``audit``, behind the token gate.

    Args:
        root: the policy store directory.
        audit: JSON-lines audit files for the audit log page.
        token: the secret every request must carry.
    """
    pages = _Pages(root, list(audit), token)
    routes = [
        Route("/", pages.bench, methods=["GET", "POST"]),
        Route("/file", pages.file),
        Route("/audit", pages.audit),
        Route("/audit/event", pages.event),
        Route("/who", pages.who),
        Route("/health", pages.health),
        Mount("/static", app=StaticFiles(directory=ASSETS / "static"), name="static"),
    ]
    return TokenGate(Starlette(routes=routes), token)


class _Pages:
    """The route handlers; each reads the store afresh, so edits on disk show on reload."""

    def __init__(self, root: Path, audit: list[Path], token: str) -> None:
        self.root = root
        self.audit_files = audit
        self.token = token
        self.templates = Environment(loader=FileSystemLoader(ASSETS / "templates"), autoescape=True,
                                     undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.globals["link"] = self.link

    def link(self, path: str, **params: Any) -> str:
        """A URL of this explorer, the token included."""
        query = {key: value for key, value in params.items() if value not in (None, "")}
        return f"{path}?{urlencode({**query, 'token': self.token})}"

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        store, problem = self._store()
        page = self.templates.get_template(template).render(
            root=self.root.resolve().name or str(self.root),
            summary=store_summary(store) if store else problem, token=self.token, **values)
        return HTMLResponse(page, status_code=status)

    def _store(self) -> tuple[PolicyStore | None, str]:
        try:
            return PolicyStore.from_directory(self.root), ""
        except PolicyError as exc:
            return None, f"the store does not load ({len(exc.problems)} problems: see Store health)"

    # -- views -------------------------------------------------------------------------------

    async def bench(self, request: Request) -> Response:
        values = dict(request.query_params)
        if request.method == "POST":
            body = await request.body()
            if len(body) > MAX_BODY:
                return PlainTextResponse("413: the form is too large", status_code=413)
            values = {key: items[-1] for key, items in parse_qs(body.decode("utf-8", "replace"),
                                                                 keep_blank_values=True).items()}
        form = BenchForm(**{key: values.get(key, default) for key, default in (
            ("principal", ""), ("action", ""), ("resource", ""), ("context", "{}"),
            ("scratch_file", ""), ("scratch_text", ""))})
        store, _ = self._store()
        result = decide_bench(self.root, form) if form.asked else None
        files = sorted({policy.source for policy in store.policies}) if store else []
        choices = action_choices(store) if store else []
        return self.render(
            "bench.html", view="bench", form=form, result=result, files=files, actions=choices,
            entities=entity_choices(store) if store else {},
            schema_data={choice.uid: {"principals": choice.principals, "resources": choice.resources,
                                      "skeleton": choice.skeleton} for choice in choices},
            scratch_sources={name: self._file_text(name, store) for name in files})

    def _file_text(self, name: str, store: PolicyStore | None) -> str:
        try:
            return store_file(self.root, name, store)
        except (UsageError, PolicyError):
            return ""

    async def file(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        first, last = _int(request.query_params.get("first")), _int(request.query_params.get("last"))
        store, _ = self._store()
        try:
            text = store_file(self.root, name, store)
        except UsageError as exc:
            return self.render("message.html", view="", title="Not a store file", message=str(exc),
                               status=404)
        except PolicyError as exc:
            return self.render("message.html", view="", title="Cannot read", message=str(exc), status=404)
        lines = list(enumerate(text.splitlines() or [""], start=1))
        return self.render("file.html", view="", name=name, lines=lines, first=first,
                           last=max(last, first))

    async def audit(self, request: Request) -> Response:
        params = request.query_params
        wanted = AuditFilter(**{key: params.get(key, "") for key in (
            "user", "action", "decision", "policy", "since", "until")})
        what_if = params.get("replay") == "1"
        store, problem = self._store()
        log = read_audit(self.audit_files, against=store if what_if and store else None)
        rows = [row for row in log.rows if wanted.keeps(row)]
        return self.render("audit.html", view="audit", log=log, rows=rows[:MAX_ROWS], matching=len(rows),
                           wanted=wanted,
                           what_if=what_if, problem=problem if what_if else "")

    async def event(self, request: Request) -> Response:
        source = _int(request.query_params.get("file"))
        line = _int(request.query_params.get("line"))
        log = read_audit(self.audit_files)
        row = log.row(source, line)
        if row is None:
            return self.render("message.html", view="audit", title="No such event",
                               message=f"no audit event at line {line} of file {source}", status=404)
        store, _ = self._store()
        return self.render("event.html", view="audit", row=row, file=log.files[source],
                           event_json=json.dumps(row.event, indent=2, sort_keys=True, default=str),
                           policies=places(store, row.reasons) if store else [])

    async def who(self, request: Request) -> Response:
        user = request.query_params.get("user", "")
        action = request.query_params.get("action", "")
        store, _ = self._store()
        answer = who_can(self.root, user, action)
        entities = entity_choices(store) if store else {}
        choices = action_choices(store) if store else []
        principal_types = sorted({kind for choice in choices for kind in choice.principals})
        users = [uid for kind in principal_types for uid in entities.get(kind, [])]
        return self.render("who.html", view="who", answer=answer, users=users, actions=choices,
                           policies=store.policies if store else (), links=store.links if store else ())

    async def health(self, request: Request) -> Response:
        return self.render("health.html", view="health", report=store_health(self.root))


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0
