"""Provenance of values: which sources of a session each tool argument came from.

A policy that sees only a tool's arguments cannot tell "pay the IBAN the user
typed" from "pay the IBAN an injected document planted". Provenance gives it
that fact: the session registers the values of labelled **sources** (what the
user said, tool results, retrieved documents, approvals), and each argument of
a call of an opted-in tool carries the labels of the sources it appears in::

    context.provenance.<argument>      // Set<String>: labels of every source holding it
                                       //   (for a list: of any of its elements)
    context.provenance_all.<argument>  // for a list: labels holding every element;
                                       //   for a single value: the same as provenance

    forbid (principal, action == Action::"send_money", resource) when {
      !(context.provenance.recipient.contains("user") ||
        context.provenance.recipient.contains("payee")) };

What "appears in" means, exactly (see docs/provenance.md): a source registers

* every string or number it holds (a tool result's leaves, the text the user
  said), **whole**, normalized by :func:`normalize` (Unicode NFKC, case folded,
  whitespace collapsed and trimmed);
* every identifier an :class:`Extractor` finds in those strings (e-mail
  addresses, URLs, domains, IBANs, phone numbers, file names), in its kind's
  canonical form.

An argument value matches a source when its normalized form is one of the
source's whole values, or when, taken whole, it is an identifier of some kind
whose canonical form the source holds. A value the model rewrote (re-spaced
differently than an extractor forgives, translated, abbreviated, computed)
matches nothing and carries no label: policies that require a trusted label
deny it, and the way forward is an approval (``approved``), never a guess.

Values are indexed (one dictionary per session of key -> labels): matching an
argument costs one lookup per key, whatever the number of registered values.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentauthz._errors import ConfigurationError, InvalidValueError

__all__ = [
    "APPROVED",
    "DEFAULT_EXTRACTORS",
    "RETRIEVED",
    "UNTRUSTED",
    "USER",
    "Extractor",
    "Provenance",
    "ProvenanceStore",
    "ResultLabel",
    "argument_provenance",
    "check_result_label",
    "normalize",
    "source_keys",
    "value_keys",
]

USER = "user"
"""Label of what the end user said (:meth:`Session.user_said`)."""
UNTRUSTED = "untrusted"
"""Default label of a tool result (a tool whose label is not configured)."""
APPROVED = "approved"
"""Label of the arguments of an approval granted in the session."""
RETRIEVED = "retrieved"
"""Label of every retrieved document let through (besides its own labels)."""

ResultLabel = str | Iterable[str] | Callable[[Any], Iterable[str] | str]
"""How a tool's results are labelled: a label, labels, or a function of the result returning them."""

#: Bounds on one source. A larger one is refused whole (its result withheld), never registered in
#: part: a value left out would pass for one no source holds.
_MAX_DEPTH = 64
_MAX_KEYS = 200_000
_MAX_TEXT = 4_000_000
_WHOLE = "v"


def normalize(text: str) -> str:
    """A string as provenance compares it: NFKC, case folded, whitespace collapsed and trimmed.

    Example:
        >>> normalize("  Alice\\u00a0SMITH\\n ")
        'alice smith'
        >>> normalize("\\uff24\\uff25\\uff18\\uff19") == normalize("de89")  # full-width letters and digits
        True
    """
    if not text.isascii():  # ASCII is NFKC already, and folds as it lowers
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Extractor:
    """Finds identifiers of one kind in text, in a canonical form both sides share.

    Args:
        kind: the kind's name (``"email"``); keys of different kinds never match.
        pattern: a regular expression matched on :func:`normalize`-d text
            (case folded): each match is a candidate identifier.
        canonical: maps a match to its canonical form, or None to reject it
            (a failed checksum); default: the match as found.
        needs: characters of which every identifier of the kind holds at
            least one (``"@"`` for e-mail addresses): a value holding none is
            not tried against the pattern. ``""`` tries every value.

    Example:
        >>> ticket = Extractor("ticket", r"\\btkt-\\d{4,}\\b")
        >>> sorted(ticket.find(normalize("See TKT-12345 and tkt-9")))
        ['tkt-12345']
        >>> ticket.whole(normalize(" TKT-12345 ")), ticket.whole("about tkt-12345")
        ('tkt-12345', None)
    """

    kind: str
    pattern: str | re.Pattern[str]
    canonical: Callable[[str], str | None] | None = None
    needs: str = ""
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _needs: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind or ":" in self.kind or self.kind == _WHOLE:
            raise ConfigurationError(f"an Extractor's kind is a non-empty name without ':' (not {_WHOLE!r})")
        try:
            compiled = re.compile(self.pattern) if isinstance(self.pattern, str) else self.pattern
        except re.error as exc:
            raise ConfigurationError(f"Extractor {self.kind!r}: invalid pattern: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_needs", frozenset(self.needs))

    def _canon(self, match: str) -> str | None:
        return self.canonical(match) if self.canonical is not None else match

    def find(self, text: str) -> set[str]:
        """The canonical identifiers in normalized ``text``."""
        found = set()
        for match in self._compiled.finditer(text):
            canon = self._canon(match.group(0))
            if canon:
                found.add(canon)
        return found

    def whole(self, value: str) -> str | None:
        """The canonical form of normalized ``value`` when it is, whole, one identifier of this kind."""
        if self._needs and self._needs.isdisjoint(value):
            return None
        match = self._compiled.fullmatch(value)
        return self._canon(match.group(0)) if match is not None else None


_IBAN_DIGITS = str.maketrans({letter: str(10 + n) for n, letter in enumerate("abcdefghijklmnopqrstuvwxyz")})


def _iban(match: str) -> str | None:
    """The IBAN, compact and lower case, when its ISO 13616 check digits hold (mod 97 == 1)."""
    compact = match.replace(" ", "").lower()
    if not 15 <= len(compact) <= 34:
        return None
    return compact if int((compact[4:] + compact[:4]).translate(_IBAN_DIGITS)) % 97 == 1 else None


def _phone(match: str) -> str | None:
    digits = re.sub(r"\D", "", match)
    if not 7 <= len(digits) <= 15:
        return None
    return ("+" if match.lstrip().startswith("+") else "") + digits


def _url(match: str) -> str | None:
    return match.rstrip(".,;:!?)]}'\"").removesuffix("/") or None


_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"

DEFAULT_EXTRACTORS: tuple[Extractor, ...] = (
    Extractor("email", r"[a-z0-9._%+-]+@" + _DOMAIN, needs="@"),
    Extractor("url", r"https?://[^\s<>\"']+", _url, needs=":"),
    Extractor("domain", r"(?<![a-z0-9.-])" + _DOMAIN + r"(?![a-z0-9-])", needs="."),
    Extractor("iban", r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b", _iban,
              needs="0123456789"),
    Extractor("phone", r"(?<![\w+])\+?\d[\d ().-]{5,22}\d(?!\w)", _phone, needs="0123456789"),
    Extractor("file", r"(?<![\w.-])[\w-]+(?:\.[\w-]+)*\.[a-z0-9]{1,8}(?![\w-])", needs="."),
)
"""E-mail addresses, URLs, domains, IBANs (checksum verified), phone numbers, file names."""


@dataclass(frozen=True)
class Provenance:
    """Which tools' arguments carry provenance, and how sources are labelled (``SessionConfig.provenance``).

    Attributes:
        tools: tool actions whose calls carry ``context.provenance`` and
            ``context.provenance_all`` (``{"send_money"}``; ``"*"`` for every
            action; with a schema, those whose context declares ``provenance``).
            With a schema, an action named here must declare it.
        results: action -> how its results are labelled (a label, labels, or a
            function of the result); a tool not named here uses ``default_result``.
            ``@authz.guard(provenance=...)`` and ``ToolSettings(provenance=...)`` set it per tool too.
        default_result: labels of the results of other tools (``("untrusted",)``);
            ``()`` registers nothing for them.
        extractors: the identifier kinds found in sources and arguments.
        document_text: the text of a retrieved item (default: a LangChain
            Document's ``page_content``, a string, or a mapping's ``"text"``/``"content"``).

    Example:
        >>> config = Provenance(tools={"send_money"}, results={"list_payees": "payee"})
        >>> config.tracks("send_money"), config.tracks("search"), config.result_labels("list_payees", [])
        (True, False, ('payee',))
    """

    tools: Collection[str] = ()
    results: Mapping[str, ResultLabel] = field(default_factory=dict)
    default_result: ResultLabel = (UNTRUSTED,)
    extractors: Sequence[Extractor] = DEFAULT_EXTRACTORS
    document_text: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        tools = (self.tools,) if isinstance(self.tools, str) else tuple(self.tools)
        if not all(isinstance(name, str) and name for name in tools):
            raise ConfigurationError("Provenance.tools takes action names")
        object.__setattr__(self, "tools", frozenset(tools))
        if not all(isinstance(e, Extractor) for e in self.extractors):
            raise ConfigurationError("Provenance.extractors takes Extractor objects")
        kinds = [e.kind for e in self.extractors]
        if len(set(kinds)) != len(kinds):
            raise ConfigurationError("Provenance.extractors: two extractors of one kind")
        for name, label in {**self.results, "(default)": self.default_result}.items():
            check_result_label(label, f"Provenance.results[{name!r}]")

    def tracks(self, action: str) -> bool:
        """Whether calls of ``action`` (its name) carry provenance."""
        return action in self.tools or "*" in self.tools

    def result_labels(self, action: str, result: Any,
                      configured: ResultLabel | None = None) -> tuple[str, ...]:
        """The labels of one result of ``action`` (``configured``: the tool's own setting).

        Raises:
            InvalidValueError: a labelling function returned something else than labels.
        """
        label = configured if configured is not None else self.results.get(action, self.default_result)
        return _labels(label(result) if callable(label) else label, f"labels of {action!r} results")

    def text_of(self, item: Any) -> str | None:
        """The text of a retrieved item, to register."""
        if self.document_text is not None:
            return self.document_text(item)
        if isinstance(item, str):
            return item
        if isinstance(item, Mapping):
            text = item.get("text", item.get("content"))
            return text if isinstance(text, str) else None
        content = getattr(item, "page_content", None)
        return content if isinstance(content, str) else None


def check_result_label(label: ResultLabel | None, where: str) -> None:
    """Refuse, at configuration time, a result label that is no label, labels or function.

    Raises:
        ConfigurationError: naming ``where``.
    """
    if label is None or callable(label):
        return
    try:
        _labels(label, where)
    except InvalidValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _labels(value: Any, where: str) -> tuple[str, ...]:
    labels = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else None
    if labels is None or not all(isinstance(label, str) and label for label in labels):
        raise InvalidValueError(f"{where}: a label is a non-empty string")
    return tuple(dict.fromkeys(labels))


# -- keys -------------------------------------------------------------------------------------


def _leaves(value: Any, depth: int = 0) -> Iterator[str]:
    """The strings and numbers a value holds, as text; an object of no known shape as its text.

    Raises:
        InvalidValueError: the value nests deeper than a source may.
    """
    if depth > _MAX_DEPTH:
        raise InvalidValueError(f"a source nests deeper than {_MAX_DEPTH} levels: it is not registered")
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item, depth + 1)
    else:  # what a message, document or tool result holds for the model, else its fields
        for name in ("content", "page_content", "text"):
            content = getattr(value, name, None)
            if content is not None:
                yield from _leaves(content, depth + 1)
                return
        dumped = getattr(value, "model_dump", None)
        if callable(dumped):
            yield from _leaves(dumped(), depth + 1)
        else:
            yield str(value)  # a float, a date, an object: what the model reads of it


def source_keys(value: Any, extractors: Sequence[Extractor] = DEFAULT_EXTRACTORS) -> set[str]:
    """The keys a source registers: its values whole, and the identifiers found in them.

    Raises:
        InvalidValueError: the source holds more text or values than one source may
            (it is refused whole, never registered in part).

    Example:
        >>> sorted(source_keys({"note": "Pay DE89 3704 0044 0532 0130 00 now", "n": 7}))
        ['iban:de89370400440532013000', 'v:7', 'v:pay de89 3704 0044 0532 0130 00 now']
    """
    keys: set[str] = set()
    size = 0
    for leaf in _leaves(value):
        size += len(leaf)
        if size > _MAX_TEXT or len(keys) > _MAX_KEYS:
            raise InvalidValueError(f"a source holds more than {_MAX_TEXT:,} characters or {_MAX_KEYS:,} "
                                    "values: it is not registered")
        text = normalize(leaf)
        if not text:
            continue
        keys.add(f"{_WHOLE}:{text}")
        for extractor in extractors:
            keys.update(f"{extractor.kind}:{token}" for token in extractor.find(text))
    return keys


def value_keys(value: Any, extractors: Sequence[Extractor] = DEFAULT_EXTRACTORS) -> tuple[str, ...]:
    """The keys an argument value (one string or number) is looked up under.

    Example:
        >>> value_keys(" DE89 3704 0044 0532 0130 00 ")
        ('v:de89 3704 0044 0532 0130 00', 'iban:de89370400440532013000')
        >>> value_keys(True)
        ()
    """
    if not _scalar(value):
        return ()
    if not isinstance(value, str):
        return (f"{_WHOLE}:{value}",)  # a number is no identifier of any kind
    text = normalize(value)
    if not text:
        return ()
    keys = [f"{_WHOLE}:{text}"]
    for extractor in extractors:  # the hot path of every tracked call: no method calls per extractor
        if extractor._needs and extractor._needs.isdisjoint(text):
            continue
        match = extractor._compiled.fullmatch(text)
        if match is not None:
            canon = extractor._canon(match.group(0))
            if canon:
                keys.append(f"{extractor.kind}:{canon}")
    return tuple(keys)


def _scalar(value: Any) -> bool:
    """Whether provenance covers ``value`` as one value: a string or an integer (not a bool)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def argument_provenance(
    arguments: Mapping[str, Any],
    lookup: Callable[[Collection[str]], Mapping[str, Collection[str]]],
    extractors: Sequence[Extractor] = DEFAULT_EXTRACTORS,
    names: Iterable[str] | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``context.provenance`` and ``context.provenance_all`` of one call.

    Args:
        arguments: the call's validated arguments (``context.input``).
        lookup: keys -> their labels (one store query for all the call's keys).
        extractors: the identifier kinds.
        names: the arguments to cover (a schema's declaration); default: every
            argument that is a string, a number, or a list of them.

    Example:
        >>> registered = {"v:bob@x.example": {"user"}, "email:bob@x.example": {"user"},
        ...               "email:eve@evil.example": {"untrusted"}}
        >>> lookup = lambda keys: {k: registered[k] for k in keys if k in registered}
        >>> argument_provenance({"to": ["Bob@X.example", "eve@evil.example"], "n": 3}, lookup)
        ({'n': [], 'to': ['untrusted', 'user']}, {'n': [], 'to': []})
    """
    chosen = list(names) if names is not None else [
        name for name, value in arguments.items()
        if _scalar(value) or (isinstance(value, (list, tuple, set, frozenset)) and all(map(_scalar, value)))]
    per_value: dict[str, list[tuple[str, ...]]] = {}
    wanted: set[str] = set()
    for name in chosen:
        value = arguments.get(name)
        items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        keyed = [value_keys(item, extractors) for item in items]
        per_value[name] = keyed
        for keys in keyed:
            wanted.update(keys)
    found = lookup(wanted) if wanted else {}
    union: dict[str, list[str]] = {}
    every: dict[str, list[str]] = {}
    for name in sorted(per_value):
        label_sets = []
        for keys in per_value[name]:
            labels: set[str] = set()
            for key in keys:
                labels.update(found.get(key, ()))
            label_sets.append(labels)
        union[name] = sorted(set().union(*label_sets)) if label_sets else []
        every[name] = sorted(set.intersection(*label_sets)) if label_sets else []
    return union, every


@runtime_checkable
class ProvenanceStore(Protocol):
    """A session store that also keeps provenance (memory and SQLite stores do).

    Separate from :class:`~agentauthz.session.SessionStore` so that a store
    without it keeps working for everything else; configuring
    ``SessionConfig(provenance=...)`` with such a store is a ConfigurationError.
    A registration bumps the session's version, like every other change, so a
    call decided while a source was being registered is decided again.
    """

    def add_provenance(self, session_id: str, keys: Mapping[str, Iterable[str]], *, owner: str) -> None:
        """Register keys (see :func:`source_keys`) with their labels.

        Raises:
            IdentityError: the session belongs to another owner (or records none).
        """
        ...

    def provenance(self, session_id: str, keys: Collection[str]) -> dict[str, frozenset[str]]:
        """The labels registered under each of ``keys`` (keys registered under none are left out)."""
        ...
