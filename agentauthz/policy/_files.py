"""Reading the files of a policy store: regular files only, bounded, never waited on.

Every file a store reads (policies, schema, entities, template links, decision
cases) goes through :func:`read_store_bytes`: a dangling symlink, a directory, a
named pipe, a socket, a device, a file swapped after it was checked, or one over
the size limit is a :class:`~agentauthz.PolicyError` naming the file, never a hang
and never a silently skipped file. :func:`store_files` and :func:`schema_files`
find the entries to read, of any kind, so that reading them says what is wrong.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from agentauthz._errors import PolicyError

__all__ = [
    "parse_json", "read_json", "read_store_bytes", "read_text", "schema_files", "store_entry", "store_files",
]


# Open without blocking: a named pipe with no writer would otherwise hang the load. The flag
# does nothing to a regular file, the only kind that is then read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(
    os, "O_CLOEXEC", 0)


def store_entry(path: Path, name: str) -> bool:
    """Whether the directory holds an entry of this name, of any kind.

    A dangling symlink, a named pipe, a socket or a directory counts: the store
    then reads it, and reading says what is wrong with it, instead of the file
    being silently left out.

    Raises:
        PolicyError: the directory cannot be searched.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PolicyError(f"{name}: cannot look it up ({exc.strerror})") from exc
    return True


def store_files(root: Path, suffixes: tuple[str, ...], problems: list[str],
                label: str = "") -> list[Path]:
    """Entries below ``root`` (hidden ones left out) whose names end with one of ``suffixes``.

    Entries of any kind are returned, so that reading them reports what they
    are; directories are searched (symlinked ones are not, as ``Path.rglob``
    does not). A directory that cannot be listed is a problem, never skipped.

    Args:
        root: the directory to search.
        suffixes: name endings to find, such as ``(".cedar",)``.
        problems: where a directory that cannot be listed is reported.
        label: how ``root`` is named in problems (its relative path).
    """
    found: list[Path] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                listed = [(entry.name, _is_directory(entry)) for entry in entries]
        except OSError as exc:
            where = folder.relative_to(root).as_posix()
            name = (f"{label}/{where}" if label else where) if where != "." else (label or str(root))
            problems.append(f"{name}: cannot list the directory ({exc.strerror})")
            continue
        for entry_name, is_directory in listed:
            if entry_name.startswith("."):
                continue
            if entry_name.endswith(suffixes):
                found.append(folder / entry_name)
            elif is_directory:
                pending.append(folder / entry_name)
    return sorted(found)


def _is_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # gone since it was listed: nothing below it to find


def schema_files(root: Path) -> list[Path]:
    """The schema candidates of a store directory; more than one is a problem for the caller.

    ``schema.cedarschema`` or ``schema.cedarschema.json`` when either is there,
    else every ``*.cedarschema`` / ``*.cedarschema.json`` entry, of any kind.

    Raises:
        PolicyError: the directory cannot be listed.
    """
    chosen = [path for path in (root / "schema.cedarschema", root / "schema.cedarschema.json")
              if store_entry(path, path.name)]
    if chosen:
        return chosen
    try:
        names = os.listdir(root)
    except OSError as exc:
        raise PolicyError(f"{root}: cannot list the directory ({exc.strerror})") from exc
    return sorted(root / name for name in names if name.endswith((".cedarschema", ".cedarschema.json")))


def read_store_bytes(path: Path, name: str, max_bytes: int) -> bytes:
    """The content of a store file, which must be a regular file (a symlink to one is fine).

    A dangling symlink, a directory, a named pipe (never waited on), a socket, a
    device, a file that cannot be opened or that vanished since it was listed:
    each is a :class:`PolicyError` naming the file. At most ``max_bytes`` are read.

    Raises:
        PolicyError: the file cannot be read as a regular file, or is over the limit.
    """
    try:
        info = os.stat(path)
        # Checked before opening too, so that no device or pipe is ever opened.
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"{name}: not a regular file ({_kind(info.st_mode)})")
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        dangling = os.path.islink(path)
        raise PolicyError(f"{name}: " + ("a symbolic link to a file that does not exist" if dangling
                                         else f"cannot read ({exc.strerror})")) from exc
    except OSError as exc:
        raise PolicyError(f"{name}: cannot read ({exc.strerror})") from exc
    try:
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())  # what was opened, should the entry have been swapped
            if not stat.S_ISREG(info.st_mode):
                raise PolicyError(f"{name}: not a regular file ({_kind(info.st_mode)})")
            if info.st_size > max_bytes:
                raise PolicyError(f"{name}: {info.st_size} bytes is over the limit of {max_bytes}")
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PolicyError(f"{name}: cannot read ({exc.strerror})") from exc
    if len(data) > max_bytes:
        raise PolicyError(f"{name}: more than {max_bytes} bytes, over the limit")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((word for test, word in kinds if test(mode)), "not a file")


def read_text(path: Path, name: str, max_bytes: int) -> str:
    """The UTF-8 text of a store file (see :func:`read_store_bytes`).

    Raises:
        PolicyError: the file cannot be read, is over the limit, or is not UTF-8
            (``name:line: not valid UTF-8``).
    """
    data = read_store_bytes(path, name, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{name}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def read_json(path: Path, name: str, max_bytes: int) -> Any:
    """The parsed JSON of a store file (see :func:`read_text` and :func:`parse_json`)."""
    return parse_json(read_text(path, name, max_bytes), name)


def parse_json(text: str, name: str) -> Any:
    """JSON text of the file ``name``, parsed.

    Raises:
        PolicyError: ``name:line: invalid JSON: ...``, or nesting too deep.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise PolicyError(f"{name}: JSON nested too deeply") from exc
