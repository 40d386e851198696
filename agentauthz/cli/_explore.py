"""``agentauthz explore``: a local web page over a policy store and its audit logs.

The page (:mod:`agentauthz.cli._explore_app`) has four views: the test bench
(one request decided and explained, with a scratch buffer to try an edit),
the audit log (filters, events, a what-if replay), who can do what (partial
evaluation and the cases' coverage) and store health (``agentauthz validate``).

It listens on 127.0.0.1 only unless told ``--allow-remote``, answers only
requests that carry the random token of the URL it prints, and writes nothing.
Needs the ``explore`` extra (Starlette, uvicorn, Jinja2).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentauthz.cli._common import EXIT_OK, Subparsers, UsageError

__all__ = ["add_explore_command", "check_bind", "new_token", "serving"]

#: What the explore extra brings, by module name.
EXTRA_MODULES = ("starlette", "uvicorn", "jinja2")
INSTALL_HINT = "agentauthz explore needs the explore extra: pip install 'agentauthz[explore]'"


def add_explore_command(commands: Subparsers) -> None:
    """``agentauthz explore``: the decision explorer."""
    parser = commands.add_parser(
        "explore", help="a local web page: test bench, audit log, who can do what, store health",
        description=(
            "Serve a page over a policy store on 127.0.0.1: decide requests and see the determining "
            "policies at their lines (try an edit in a scratch buffer, nothing is written), read and "
            "replay audit logs, see who may ever call which tool and which policies no case covers, "
            "and the store's problems and warnings. The printed URL carries a random token that "
            "every request needs. Needs the explore extra."))
    parser.add_argument("directory", nargs="?", metavar="DIR",
                        help="policy store directory (default: ./policies if it exists, else the current "
                             "directory)")
    parser.add_argument("--audit", action="append", default=[], metavar="FILE",
                        help="an audit log (JSON lines) for the audit view; repeatable")
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="port to listen on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; others need --allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow an address other than loopback (anyone who has the URL sees the store)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(handler=run_explore_command)


def run_explore_command(args: argparse.Namespace) -> int:
    """``agentauthz explore``: serve until interrupted."""
    from agentauthz.cli._author import store_directory

    root = store_directory(args)
    audit = [Path(name) for name in args.audit]
    for path in audit:
        if not path.is_file():
            raise UsageError(f"--audit {path}: no such file")
    check_bind(args.host, allow_remote=args.allow_remote)
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{INSTALL_HINT} ({', '.join(missing)} missing)")
    token = new_token()
    with serving(root, audit, token, host=args.host, port=args.port) as url:
        print(f"agentauthz explore: {url}", flush=True)
        print("(Ctrl-C to stop)", flush=True)
        if args.open:
            webbrowser.open(url)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return EXIT_OK


def new_token() -> str:
    """A fresh random token for the URL (256 bits)."""
    return secrets.token_urlsafe(32)


def check_bind(host: str, *, allow_remote: bool) -> None:
    """Refuse an address other than loopback unless ``allow_remote``.

    Raises:
        UsageError: ``host`` is not a loopback address and remote access was not allowed.

    Example:
        >>> check_bind("127.0.0.1", allow_remote=False)
        >>> try:
        ...     check_bind("0.0.0.0", allow_remote=False)
        ... except UsageError as exc:
        ...     print(str(exc).split(":")[0])
        --host 0.0.0.0 is not a loopback address
    """
    if allow_remote or _is_loopback(host):
        return
    raise UsageError(f"--host {host} is not a loopback address: the page would be reachable from other "
                     "machines; add --allow-remote if that is what you want")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextmanager
def serving(root: Path, audit: Sequence[Path], token: str, *, host: str = "127.0.0.1",
            port: int = 0) -> Iterator[str]:
    """Serve the explorer in a background thread; yields its URL (token included).

    The caller checks the address (:func:`check_bind`) first.

    Raises:
        ImportError: the ``explore`` extra is not installed.
        UsageError: the address cannot be bound.
    """
    try:
        import uvicorn

        from agentauthz.cli._explore_app import create_app
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(root, audit, token), log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=_run, args=(server, sock), name="agentauthz-explore", daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            threading.Event().wait(0.01)
        shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
        yield f"http://{shown}:{bound_port}/?token={token}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def _run(server: Any, sock: socket.socket) -> None:
    try:
        server.run(sockets=[sock])
    except Exception as exc:  # the thread's end is the server's end; say why on stderr
        print(f"agentauthz explore: the server stopped: {exc}", file=sys.stderr)
