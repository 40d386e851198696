"""What an error message may say: bounded always, redacted where decisions are made.

Two audiences read the errors agentauthz produces, and they get different text:

* **Decisions at run time** (``Decision.errors``, audit events, refusals): Cedar's
  messages quote the values of the request, the entities and the context, which
  belong to end users. :func:`redact` blanks them out and keeps names, entity uids
  and policy ids, so an operator learns what failed without learning the data.
* **The author's own files** (loading and validating a store, ``validate_tools``,
  ``agentauthz validate|test|check``): the values are the author's, and the author
  needs them to fix the file. :func:`author_message` keeps Cedar's message whole
  (attribute names, expected and actual types, the value, the entity uid); only a
  message longer than any real one (a dump of thousands of entities) is cut.

Every message is bounded (:func:`truncate`): cedarpy messages can embed whole
entity dumps.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["AUTHOR_MESSAGE_LIMIT", "MAX_MESSAGE", "author_message", "redact", "truncate"]

#: Bound of a message about a decision (with its values redacted).
MAX_MESSAGE = 300
#: Bound of a message about the author's own files: longer than any message Cedar
#: writes about one policy, entity or attribute, shorter than a dump of entities.
AUTHOR_MESSAGE_LIMIT = 2000


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    """Bound an error message: cedarpy messages can embed whole entity dumps."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def author_message(message: str) -> str:
    """A message about the author's own files: Cedar's words whole, values included, bounded.

    Example:
        >>> author_message("in attribute `seats` on `User::'a'`, type mismatch: expected long: `'two'`")
        "in attribute `seats` on `User::'a'`, type mismatch: expected long: `'two'`"
        >>> len(author_message("x" * 10_000))
        2000
    """
    return truncate(message, AUTHOR_MESSAGE_LIMIT)


_QUOTED = re.compile(r"`([^`]*)`")
_NAME_OR_UID = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:::"(?:[^"\\]|\\.)*")?')


# Errors whose text at that place is always a value, even one that looks like a name
# (a password "hunter2" reads like an identifier): extension-function parse errors, tag lookups
# by a computed key, and AWS validation messages ("Value 'x' at 'path' failed to ...").
_VALUE_PLACES = (
    (re.compile(r"`[^`]*`(?= is not a well-formed decimal value)"), "`<value>`"),
    (re.compile(r"(?<=does not have the tag )`[^`]*`"), "`<value>`"),
    (re.compile(r"(?<=from string )`[^`]*`|(?<=from the string )`[^`]*`|(?<=Found: )`[^`]*`"), "`<value>`"),
    (re.compile(r"(?<=invalid IP address: )[^\n]*|(?<=invalid date: )[^\n]*"), "<value>"),
)
_WORD_CHAR = re.compile(r"\w")


def _blank_validation_values(message: str) -> str:
    """``Value <anything> at '`` -> ``Value <value> at '`` (AWS validation messages).

    Without a regex: a lazy ``Value .*? at '`` rescans the rest of the message
    from every ``Value `` when no `` at '`` follows, and a value can repeat
    ``Value `` (a 48 KB entity id made one error take 5 s).
    """
    parts: list[str] = []
    done = search = 0
    while (found := message.find("Value ", search)) >= 0:
        start = found + len("Value ")
        if found and _WORD_CHAR.fullmatch(message[found - 1]):
            search = found + 1
            continue
        end = message.find(" at '", start)
        if end < 0:
            break  # no later "Value " has an " at '" after it either
        parts += (message[done:start], "<value>")
        done, search = end, max(end - len("Value "), found + 1)
    return "".join(parts) + message[done:]


def redact(message: str, keep: Collection[str] = ()) -> str:
    """Blank out values Cedar quotes in an error (records, strings, numbers).

    Names, entity uids and policy ids stay: they say what failed without
    saying what the data was. Where an error always shows a value (a string
    that is no decimal or IP address, a tag looked up by a computed key, an
    AWS validation message), it is blanked out whatever it looks like.

    Args:
        message: the error.
        keep: quoted texts known to be policy ids (a link id such as
            ``share-1`` does not look like a name).
    """
    for pattern, replacement in _VALUE_PLACES:
        message = pattern.sub(replacement, message)
    message = _blank_validation_values(message)
    return _QUOTED.sub(
        lambda m: m.group(0) if m.group(1) in keep or _NAME_OR_UID.fullmatch(m.group(1)) else "`<value>`",
        message,
    )
