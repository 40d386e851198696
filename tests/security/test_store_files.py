"""Attack class: store files that exist but cannot be read as regular files (security review, finding 5).

A reload used to find entity, link and schema files with ``is_file()``, which is
False for a dangling symlink or a named pipe: the reload "succeeded" without
them and denials became allows. Every file the store reads (``*.cedar`` at any
depth, the schema in either format and under any name, ``entities.json``,
``template-links.json``, ``linked``) is now found by any directory entry of its
name and read as a regular file, or the load fails naming it, and ``reload()``
keeps the old set.

Cases tried: 8 store files x 5 kinds (dangling symlink, named pipe, socket,
directory, unreadable) x (from_directory, reload) = 80; a symlink to a regular
file for each of the 8 files: 8; a subdirectory that cannot be listed, loaded
and reloaded: 2; a policy file that vanishes between listing and reading: 1;
the CLI on a named pipe and a dangling symlink among decision cases and policy
files: 5.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.cli._main import main

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX pipes and sockets")

U = az.EntityUID
ALICE = U("User", "alice")
SECRET = U("Doc", "secret")

SCHEMA_TEXT = """\
entity Group;
entity User in [Group];
entity Doc;
action read appliesTo { principal: User, resource: Doc };
"""
SCHEMA_JSON = json.dumps({"": {
    "entityTypes": {"Group": {}, "User": {"memberOfTypes": ["Group"]}, "Doc": {}},
    "actions": {"read": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}}}}})

BASE = """\
@id("everyone-reads") permit (principal, action, resource);
@id("banned-read-nothing") forbid (principal in Group::"banned", action, resource);
@id("no-read") forbid (principal == ?principal, action, resource);
"""
FORBID = '@id("secret-forbidden") forbid (principal, action, resource == Doc::"secret");\n'
ENTITIES = json.dumps([
    {"uid": {"type": "User", "id": "bob"}, "attrs": {}, "parents": [{"type": "Group", "id": "banned"}]},
    {"uid": {"type": "Group", "id": "banned"}, "attrs": {}, "parents": []}])
LINKS = json.dumps([{"id": "no-read-carol", "template": "no-read",
                     "principal": {"type": "User", "id": "carol"}}])
LINKED = json.dumps([{"template_id": "no-read", "link_id": "no-read-dave",
                      "args": {"?principal": 'User::"dave"'}}])

#: Each store file, the content it has in a good store, and a request it denies that would be
#: allowed without it (with a schema, an undeclared action cannot be built: denied).
FILES: dict[str, tuple[str, az.Request]] = {
    "secret.cedar": (FORBID, az.Request(ALICE, U("Action", "read"), SECRET)),
    "sub/deeper/secret.cedar": (FORBID, az.Request(ALICE, U("Action", "read"), SECRET)),
    "schema.cedarschema": (SCHEMA_TEXT, az.Request(ALICE, U("Action", "write"), U("Doc", "d"))),
    "schema.cedarschema.json": (SCHEMA_JSON, az.Request(ALICE, U("Action", "write"), U("Doc", "d"))),
    "store.cedarschema": (SCHEMA_TEXT, az.Request(ALICE, U("Action", "write"), U("Doc", "d"))),
    "entities.json": (ENTITIES, az.Request(U("User", "bob"), U("Action", "read"), U("Doc", "d"))),
    "template-links.json": (LINKS, az.Request(U("User", "carol"), U("Action", "read"), U("Doc", "d"))),
    "linked": (LINKED, az.Request(U("User", "dave"), U("Action", "read"), U("Doc", "d"))),
}
KINDS = ("dangling-symlink", "named-pipe", "socket", "directory", "unreadable")
NOBODY = 65534


def _store(root: Path, victim: str) -> Path:
    """A good store holding ``victim``; the other schema names are left out (one schema only)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # searchable by the unprivileged user of the permission cases
    (root / "base.cedar").write_text(BASE)
    for name in ("entities.json", "template-links.json", "linked"):
        if name != victim:
            (root / name).write_text(FILES[name][0])
    if not victim.endswith((".cedarschema", ".cedarschema.json")):
        (root / "schema.cedarschema").write_text(SCHEMA_TEXT)
    path = root / victim
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FILES[victim][0])
    for folder in path.relative_to(root).parents:
        os.chmod(root / folder, 0o755)
    return root


def _break(path: Path, kind: str) -> None:
    """Replace a store file by an entry of the same name of ``kind``."""
    path.unlink()
    if kind == "dangling-symlink":
        path.symlink_to(path.parent / "missing-target")
    elif kind == "named-pipe":
        os.mkfifo(path)
    elif kind == "socket":
        with contextlib.chdir(path.parent):  # a socket path is short: bind the bare name
            server = socket.socket(socket.AF_UNIX)
            server.bind(path.name)
            server.close()
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("unreadable")
        os.chmod(path, 0)


def _decides(store: az.PolicyStore, request: az.Request) -> bool:
    return az.LocalEngine(store).decide([request])[0].allowed


def _drop_privileges() -> None:
    """As root, become nobody, for whom a mode-0 file or folder is unreadable (only in a child)."""
    if os.geteuid() == 0:
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def _isolated(function: Callable[[], Any]) -> Any:
    """``function()`` (its result JSON-able), in a forked child when root, so privileges can drop."""
    if os.geteuid() != 0:
        return function()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, exit without pytest's teardown
        try:
            result = json.dumps(function())
        except BaseException as exc:  # reported to the parent, which fails the test
            result = json.dumps(f"child raised {type(exc).__name__}: {exc}")
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def _finishes(function: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``function()``, failing the test if it blocks (a named pipe waited on)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"blocked for more than {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def store_root() -> Iterator[Path]:
    # Not tmp_path: its parents are private to root, and the permission cases run as nobody.
    with tempfile.TemporaryDirectory(prefix="agentauthz-store-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder) / "store"


def _load_error(root: Path) -> str:
    try:
        az.PolicyStore.from_directory(root)
    except az.PolicyError as exc:
        return str(exc)
    return "loaded"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("victim", list(FILES))
def test_a_store_file_that_is_no_regular_file_fails_the_load_naming_it(
        store_root: Path, victim: str, kind: str) -> None:
    root = _store(store_root, victim)
    _break(root / victim, kind)

    if kind == "unreadable":
        message = _isolated(lambda: (_drop_privileges(), _load_error(root))[1])
    else:
        message = _finishes(lambda: _load_error(root))

    assert message != "loaded"
    assert victim in message, message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("victim", list(FILES))
def test_a_reload_that_cannot_read_a_store_file_keeps_the_old_set_and_its_denials(
        store_root: Path, victim: str, kind: str) -> None:
    root = _store(store_root, victim)
    request = FILES[victim][1]

    def reload_after_breaking() -> dict[str, Any]:
        store = az.PolicyStore.from_directory(root)
        before = (store.fingerprint, _decides(store, request))
        _break(root / victim, kind)
        if kind == "unreadable":
            _drop_privileges()
        try:
            store.reload()
            error = ""
        except az.PolicyError as exc:
            error = str(exc)
        return {"before": before, "after": (store.fingerprint, _decides(store, request)), "error": error}

    # Unreadable: loaded with privileges, reloaded without them (in a child when root).
    outcome = _isolated(reload_after_breaking) if kind == "unreadable" else _finishes(reload_after_breaking)

    assert victim in outcome["error"], outcome
    assert outcome["before"][1] is False
    assert tuple(outcome["after"]) == tuple(outcome["before"])


@pytest.mark.parametrize("victim", list(FILES))
def test_a_symlink_to_a_regular_file_is_read_as_the_file(store_root: Path, victim: str) -> None:
    root = _store(store_root, victim)
    target = store_root.parent / "elsewhere" / victim.replace("/", "-")
    target.parent.mkdir(exist_ok=True)
    (root / victim).rename(target)
    (root / victim).symlink_to(target)

    store = az.PolicyStore.from_directory(root)

    assert _decides(store, FILES[victim][1]) is False
    assert _decides(store, az.Request(ALICE, U("Action", "read"), U("Doc", "d"))) is True


def test_a_subdirectory_that_cannot_be_listed_fails_the_load_and_the_reload(store_root: Path) -> None:
    root = _store(store_root, "sub/deeper/secret.cedar")
    request = FILES["sub/deeper/secret.cedar"][1]

    def run() -> dict[str, Any]:
        store = az.PolicyStore.from_directory(root)
        os.chmod(root / "sub", 0)
        _drop_privileges()
        try:
            store.reload()
            reload_error = ""
        except az.PolicyError as exc:
            reload_error = str(exc)
        return {"load": _load_error(root), "reload": reload_error, "denied": not _decides(store, request)}

    outcome = _isolated(run)
    os.chmod(root / "sub", 0o755)  # so that the folder can be removed

    assert "sub: cannot list the directory" in outcome["load"], outcome
    assert "sub: cannot list the directory" in outcome["reload"], outcome
    assert outcome["denied"] is True


def test_a_policy_file_that_vanishes_between_listing_and_reading_fails_closed(
        store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(store_root, "secret.cedar")
    store = az.PolicyStore.from_directory(root)
    listed = os.scandir

    class VanishingListing:
        """Lists the directory, then the file is removed before the loader reads it."""

        def __init__(self, path: Any) -> None:
            with listed(path) as entries:
                self.entries = list(entries)
            if Path(path) == root:
                (root / "secret.cedar").unlink(missing_ok=True)

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(os, "scandir", VanishingListing)

    with pytest.raises(az.PolicyError, match=r"secret\.cedar: cannot read"):
        store.reload()
    assert _decides(store, FILES["secret.cedar"][1]) is False


# -- the command line reads decision cases and policy files the same way -------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = _finishes(lambda: main(list(argv)))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("kind", ["named-pipe", "dangling-symlink", "directory"])
def test_a_decision_case_that_is_no_regular_file_fails_instead_of_blocking_or_vanishing(
        store_root: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = _store(store_root, "secret.cedar")
    (root / "DENY").mkdir()
    case = root / "DENY" / "secret.json"
    case.write_text(json.dumps({"principal": 'User::"alice"', "action": 'Action::"read"',
                                "resource": 'Doc::"secret"', "context": {}}))
    _break(case, kind)

    code, out = _cli(capsys, "test", str(root), "--no-coverage")

    assert code == 1
    assert "DENY/secret.json" in out
    assert "0 passed, 1 failed" in out


@pytest.mark.parametrize("kind", ["named-pipe", "dangling-symlink"])
def test_format_refuses_a_policy_file_that_is_no_regular_file_without_blocking(
        store_root: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = _store(store_root, "secret.cedar")
    _break(root / "secret.cedar", kind)

    code, out = _cli(capsys, "format", str(root), "--check")

    assert code == 1
    assert "secret.cedar" in out
    assert stat.S_ISREG(os.lstat(root / "base.cedar").st_mode)
