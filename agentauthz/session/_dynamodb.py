"""Sessions in a DynamoDB table, shared by every process and host of a fleet.

The semantics are those of :class:`~agentauthz.session.SQLiteSessionStore`
(ownership, reservation on admission, count on completion, exact under
concurrency, a crashed call keeps counting); only the storage differs.

Layout (one table, partition key ``pk``, sort key ``sk``, both strings; see
:func:`create_table`):

* ``(session id, "head")``: the session's **head**: ``version``, ``owner``,
  ``generation`` and ``state`` (JSON: labels seen, counts, running sums, calls
  in flight, approvals and the latest completed calls). Every change is a write
  of the head conditioned on the version it read (optimistic concurrency); a
  write that lost the race reads again and retries, so counts are exact
  whatever the number of writers.
* ``(session id, "<generation>#page#<n>")``: completed calls moved out of the
  head when it holds too many (a **page**, written once, in the same
  transaction as the head that no longer holds them). Counts and sums live in
  the head; pages only serve ``window_calls`` and ``history``.
* ``(session id, "<generation>#call#<digest>")`` and ``"...#ext#<digest>"``:
  a **marker** per key and per external id of each call moved to a page,
  written in the same transaction. The head answers for the calls it holds
  (in flight, latest completed), markers for the older ones: a key is never
  reused and an external id never runs twice, without growing the head.

A guarded call costs one strongly consistent read (its decision's) and two
conditional writes (its admission, its completion); a completion that moves
calls to a page is a transaction.

Every item carries ``expires_at`` (seconds since the epoch) for DynamoDB's time
to live: a session nobody wrote for ``ttl`` is deleted by DynamoDB, and a head
past its expiry is read as absent even before DynamoDB removed it.

Deleting a session deletes its head (one write, so the session is gone at
once) and then the items of its generation; a session started again under the
same id gets a new generation and never sees the old items.

Failures fail closed: a throttled request (after botocore's own retries), an
unreachable endpoint, missing permissions or a missing table raise
:class:`~agentauthz.EngineError` (the backend exception is its ``__cause__``),
which denies the call being decided.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from agentauthz._errors import ConfigurationError, EngineError
from agentauthz._extras import optional_import
from agentauthz.session._stores import (
    Admission,
    Approval,
    CallRecord,
    Number,
    SessionSnapshot,
    _number,
    _number_text,
    foreign_session,
)

__all__ = ["TABLE_DEFINITION", "TTL_ATTRIBUTE", "DynamoDBSessionStore", "create_table"]


TTL_ATTRIBUTE = "expires_at"
"""The attribute DynamoDB's time to live reads (seconds since the epoch)."""

TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
"""The table :func:`create_table` creates (``CreateTable`` arguments without the name)."""

_HEAD = "head"
# A head stays well under DynamoDB's 400 KB item limit: completed calls move to pages first,
# and a head that still does not fit (labels, approvals, calls in flight) is refused, never cut.
_MAX_HEAD_BYTES = 350_000
# A transaction holds at most 100 items: the head, a page and two markers per moved call.
_MOVED_AT_ONCE = 49
_THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                        "RequestLimitExceeded", "LimitExceededException"})
_FORBIDDEN = frozenset({"AccessDeniedException", "UnrecognizedClientException",
                        "InvalidSignatureException", "ExpiredTokenException",
                        "MissingAuthenticationTokenException", "IncompleteSignatureException"})
_CONFLICTS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
_THROTTLED_IN_TRANSACTION = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded",
                                       "RequestLimitExceeded"})


class _Conflict(Exception):
    """Another writer changed the session between our read and our write: read again."""


@contextmanager
def map_dynamodb_errors(table_name: str) -> Iterator[None]:
    """Translate botocore's errors into :class:`~agentauthz.EngineError` (messages name no values).

    A lost optimistic race (a failed condition) becomes ``_Conflict`` for the caller to retry.
    """
    try:
        yield
    except Exception as exc:
        response = getattr(exc, "response", None)
        if isinstance(response, Mapping):
            code = str(response.get("Error", {}).get("Code", ""))
            reasons = {str(reason.get("Code")) for reason in response.get("CancellationReasons", ())}
            if code == "TransactionCanceledException" and reasons & _THROTTLED_IN_TRANSACTION:
                code = "ThrottlingException"
            elif code == "ConditionalCheckFailedException" or (
                    code == "TransactionCanceledException" and reasons & _CONFLICTS):
                raise _Conflict from exc
            if code == "TransactionConflictException":
                raise _Conflict from exc
            raise EngineError(_client_error_message(table_name, code, response)) from exc
        if type(exc).__module__.startswith(("botocore", "urllib3")):
            raise EngineError(
                f"DynamoDB table {table_name!r} is unreachable ({type(exc).__name__})") from exc
        raise


def _client_error_message(table_name: str, code: str, response: Mapping[str, Any]) -> str:
    where = f"DynamoDB table {table_name!r}"
    if code in _THROTTLED:
        return f"{where} throttled the request ({code}) after retries"
    if code in _FORBIDDEN:
        return (f"{where}: access denied ({code}); the role needs dynamodb:GetItem, PutItem, "
                "DeleteItem, Query, BatchWriteItem, TransactWriteItems and TransactGetItems on the table")
    if code == "ResourceNotFoundException":
        return f"{where} does not exist (create it with agentauthz.session.create_table)"
    message = str(response.get("Error", {}).get("Message", ""))
    if code == "ValidationException" and "size" in message.lower():
        return f"{where}: a session item is larger than DynamoDB allows ({code})"
    return f"{where} failed ({code or 'unknown error'})"


def create_table(client: Any, table_name: str, *, wait: bool = True) -> None:
    """Create the table :class:`DynamoDBSessionStore` uses, with time to live on ``expires_at``.

    On-demand billing, partition key ``pk`` and sort key ``sk`` (strings): the
    definition of :data:`TABLE_DEFINITION` (the deploying guide shows the same
    table as a CloudFormation resource).

    Args:
        client: a boto3 DynamoDB client.
        table_name: the table to create.
        wait: wait until the table is active before turning time to live on.

    Raises:
        EngineError: DynamoDB refused (the table exists, missing permissions, ...).

    Example:
        >>> from agentauthz.testing import LocalDynamoDB
        >>> with LocalDynamoDB() as dynamodb:
        ...     create_table(dynamodb.client(), "agent-sessions")
        ...     dynamodb.client().describe_time_to_live(TableName="agent-sessions")[
        ...         "TimeToLiveDescription"]["AttributeName"]
        'expires_at'
    """
    with map_dynamodb_errors(table_name):
        client.create_table(TableName=table_name, **TABLE_DEFINITION)
        if wait:
            client.get_waiter("table_exists").wait(TableName=table_name,
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def _digest(text: str) -> str:
    # Keys built from structured values: a caller's id never shapes the key (nor its length).
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record_json(record: CallRecord) -> dict[str, Any]:
    # Field by field, so that a field CallRecord gains (a used-up approval's key) is stored too.
    data = {item.name: getattr(record, item.name) for item in fields(CallRecord)}
    data["sums"] = {name: _number_text(value) for name, value in sorted(record.sums.items())}
    data["labels"] = sorted(record.labels)
    return data


def _record(data: Mapping[str, Any]) -> CallRecord:
    values = dict(data)
    values["at"] = float(values["at"])
    values["sums"] = {name: _number(value) for name, value in values["sums"].items()}
    values["labels"] = frozenset(values["labels"])
    if isinstance(values.get("approval"), list):
        values["approval"] = tuple(values["approval"])
    return CallRecord(**values)


def _grant_terms(approval: Approval) -> dict[str, Any]:
    """What a grant says besides who granted it (re-granting with other terms replaces it)."""
    terms = asdict(approval)
    del terms["granted_by"]
    return terms


@dataclass
class _Head:
    """One read of a session's head: what is stored, and the raw version the next write is conditioned on."""

    session_id: str
    owner: str
    generation: str
    version: int = 0
    stored_version: int | None = None  # the item's version, None when there is none (an expired one counts)
    stored_generation: str | None = None  # the item's generation (the head's own unless it expired)
    seen: set[str] = field(default_factory=set)
    calls: dict[str, int] = field(default_factory=dict)
    totals: dict[str, dict[str, Number]] = field(default_factory=dict)
    pending: list[CallRecord] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    recent: list[CallRecord] = field(default_factory=list)
    pages: list[tuple[int, float]] = field(default_factory=list)  # (number, latest completion) per page
    provenance: dict[str, set[str]] = field(default_factory=dict)  # value key -> where it came from

    @property
    def live(self) -> bool:
        return self.version > 0

    def state_json(self) -> str:
        return json.dumps({
            "seen": sorted(self.seen),
            "calls": self.calls,
            "totals": {action: {name: _number_text(value) for name, value in sums.items()}
                       for action, sums in self.totals.items()},
            "pending": [_record_json(record) for record in self.pending],
            "approvals": [asdict(approval) for approval in self.approvals],
            "provenance": {key: sorted(labels) for key, labels in sorted(self.provenance.items())},
            "recent": [_record_json(record) for record in self.recent],
            "pages": self.pages,
        }, separators=(",", ":"))

    @classmethod
    def from_item(cls, session_id: str, item: Mapping[str, Any]) -> _Head:
        state = json.loads(item["state"]["S"])
        return cls(
            session_id=session_id,
            owner=item["owner"]["S"],
            generation=item["generation"]["S"],
            version=int(item["version"]["N"]),
            stored_version=int(item["version"]["N"]),
            stored_generation=item["generation"]["S"],
            seen=set(state["seen"]),
            calls={action: int(n) for action, n in state["calls"].items()},
            totals={action: {name: _number(value) for name, value in sums.items()}
                    for action, sums in state["totals"].items()},
            pending=[_record(data) for data in state["pending"]],
            approvals=[Approval(**data) for data in state["approvals"]],
            provenance={key: set(labels) for key, labels in state.get("provenance", {}).items()},
            recent=[_record(data) for data in state["recent"]],
            pages=[(int(number), float(latest)) for number, latest in state["pages"]],
        )


def _holding(call_id: str) -> Callable[[_Head], bool]:
    """Accepts a head that has this call in flight (the one to complete or release)."""
    return lambda head: any(record.call_id == call_id for record in head.pending)


def _repeated_in(head: _Head, call: CallRecord) -> Admission | None:
    def same(record: CallRecord) -> bool:
        return record.call_id == call.call_id or (
            call.external_id is not None and record.external_id == call.external_id)

    if any(same(record) for record in head.recent):
        return "completed"
    return "in_flight" if any(same(record) for record in head.pending) else None


class DynamoDBSessionStore:
    """Sessions in a DynamoDB table, for agents served by many processes and hosts.

    Same semantics as :class:`~agentauthz.session.SQLiteSessionStore`: a call
    is reserved (in flight, counting) when it is admitted and counted when it
    completes; admission is a compare-and-swap on the session's version, so
    "at most 3 deletions per hour" allows 3 across the whole fleet, never 3
    per instance. A call whose outcome is unknown (its process was killed)
    stays in flight and keeps counting until the application releases it.

    Every write is conditioned on the version it read; a writer that lost a
    race reads again (up to ``max_attempts`` times). Throttling (after
    botocore's retries), an unreachable endpoint, missing permissions or a
    missing table raise :class:`~agentauthz.EngineError`: the call being
    decided is denied. A session too large for one item (labels, approvals
    and calls in flight beyond about 350 KB) is refused the same way, never
    truncated; completed calls move to extra items (pages) as they accumulate.

    Args:
        table_name: the table (create it with :func:`create_table` or the
            CloudFormation resource of the deploying guide).
        client: a boto3 DynamoDB client; default ``boto3.client("dynamodb")``.
        ttl: how long a session lives after its last write (DynamoDB's time to
            live on ``expires_at``); None keeps sessions until deleted. Pages
            and markers live ``ttl`` after they were written: a call older than
            that drops out of ``history`` and its ids may be used again.
        page_size: completed calls the head keeps; past it, the oldest (half of
            them, at most 49 at a time) move to a page, an extra item read only
            for long windows or histories.
        max_attempts: reads and writes of one change before it fails when other
            writers keep changing the session.
        clock: seconds since the epoch (tests pass a fake clock).

    Raises:
        ImportError: no client given and boto3 is not installed.
        ConfigurationError: a ttl that is not positive, a page size or a number
            of attempts below 1.

    Example:
        >>> from agentauthz.testing import LocalDynamoDB
        >>> with LocalDynamoDB() as dynamodb:
        ...     create_table(dynamodb.client(), "agent-sessions")
        ...     store = DynamoDBSessionStore("agent-sessions", client=dynamodb.client())
        ...     store.add_labels("c-1", ["pii"], owner='User::"alice"')
        ...     sorted(store.load("c-1", since=0.0, history=5).seen)
        ['pii']
    """

    #: A call's single-use approval (``CallRecord.approval``) is removed in the write that admits it.
    consumes_approvals = True

    def __init__(self, table_name: str, *, client: Any = None,
                 ttl: timedelta | None = timedelta(days=30), page_size: int = 100, max_attempts: int = 100,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl is not None and ttl <= timedelta(0):
            raise ConfigurationError("DynamoDBSessionStore: ttl must be positive (or None: no expiry)")
        if page_size < 1 or max_attempts < 1:
            raise ConfigurationError("DynamoDBSessionStore: page_size and max_attempts must be 1 or more")
        if client is None:
            boto3 = optional_import("boto3", extra="aws", needed_by="DynamoDBSessionStore")
            client = boto3.client("dynamodb")
        self.table_name = table_name
        self.client = client
        self.ttl = ttl
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.clock = clock
        self._local = threading.local()

    # -- reading ---------------------------------------------------------------------------------

    def _key(self, session_id: str, sort_key: str) -> dict[str, Any]:
        return {"pk": {"S": session_id}, "sk": {"S": sort_key}}

    def _get(self, session_id: str, sort_key: str) -> dict[str, Any] | None:
        with map_dynamodb_errors(self.table_name):
            item: dict[str, Any] | None = self.client.get_item(
                TableName=self.table_name, Key=self._key(session_id, sort_key),
                ConsistentRead=True).get("Item")
        if item is None or self._expired(item):
            return None
        return item

    def _expired(self, item: Mapping[str, Any]) -> bool:
        expires = item.get(TTL_ATTRIBUTE)
        return expires is not None and float(expires["N"]) <= self.clock()

    def _head(self, session_id: str, owner: str | None = None, *,
              reuse: Callable[[_Head], bool] | None = None) -> _Head:
        """The session's head; a missing or expired one reads as a new session of ``owner``.

        With ``reuse``, this thread's last read or write of the session stands in for a new
        read when ``reuse`` accepts it (an admission right after its decision's load, a
        completion right after its admission). Every write is conditioned on the version the
        head holds, so a stale one only fails the write, and the retry reads again.
        """
        last = getattr(self._local, "last", None)
        if reuse is not None and last is not None and last[0] == session_id:
            head = self._parsed(session_id, last[1], owner)
            if reuse(head):
                return head
        with map_dynamodb_errors(self.table_name):
            item = self.client.get_item(TableName=self.table_name, Key=self._key(session_id, _HEAD),
                                        ConsistentRead=True).get("Item")
        self._local.last = (session_id, item)
        return self._parsed(session_id, item, owner)

    def _parsed(self, session_id: str, item: Mapping[str, Any] | None, owner: str | None) -> _Head:
        try:
            if item is not None and not self._expired(item):
                return _Head.from_item(session_id, item)
            return _Head(session_id, owner or "", uuid.uuid4().hex,
                         stored_version=int(item["version"]["N"]) if item is not None else None,
                         stored_generation=item["generation"]["S"] if item is not None else None)
        except (KeyError, TypeError, ValueError) as exc:  # written by something else: never guess
            raise EngineError(f"DynamoDB table {self.table_name!r}: the item of session {session_id!r} "
                              "is not a session this version can read") from exc

    def _marker_key(self, head: _Head, kind: str, value: str) -> str:
        return f"{head.generation}#{kind}#{_digest(value)}"

    def _markers(self, head: _Head, call: CallRecord) -> list[str]:
        keys = [self._marker_key(head, "call", call.call_id)]
        if call.external_id is not None:
            keys.append(self._marker_key(head, "ext", call.external_id))
        return keys

    def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
        """See :meth:`SessionStore.load`."""
        head = self._head(session_id)
        if not head.live:
            return SessionSnapshot(session_id)
        completed = list(head.recent)  # oldest first
        counts: dict[str, int] = {}
        for record in completed:
            if record.at >= since:
                counts[record.action] = counts.get(record.action, 0) + 1
        for number, latest in reversed(head.pages):
            if latest < since and len(completed) >= history:
                continue
            item = self._get(session_id, f"{head.generation}#page#{number:010d}")
            if item is None:  # expired with its time to live: older than the session's ttl
                continue
            records = [_record(data) for data in json.loads(item["records"]["S"])]
            for record in records:
                if record.at >= since:
                    counts[record.action] = counts.get(record.action, 0) + 1
            completed[:0] = records
        return SessionSnapshot(
            session_id=session_id, version=head.version, owner=head.owner, seen=frozenset(head.seen),
            calls=dict(head.calls), window_calls=counts,
            totals={action: dict(sums) for action, sums in head.totals.items()},
            history=tuple(completed[-history:]) if history else (), pending=tuple(head.pending),
            approvals=tuple(head.approvals))

    # -- writing ---------------------------------------------------------------------------------

    def _expiry(self) -> dict[str, Any]:
        if self.ttl is None:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(int(self.clock() + self.ttl.total_seconds()))}}

    def _head_put(self, head: _Head) -> dict[str, Any]:
        """The conditional write of ``head`` at its next version."""
        state = head.state_json()
        if len(state.encode("utf-8")) > _MAX_HEAD_BYTES:
            raise EngineError(
                f"session {head.session_id!r} no longer fits one DynamoDB item "
                f"({len(state)} bytes of labels, approvals and calls in flight)")
        item = {**self._key(head.session_id, _HEAD), "version": {"N": str(head.version + 1)},
                "owner": {"S": head.owner}, "generation": {"S": head.generation}, "state": {"S": state},
                **self._expiry()}
        put: dict[str, Any] = {"TableName": self.table_name, "Item": item}
        if head.stored_version is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            # The generation too: a session deleted and started again reaches the same versions.
            put["ConditionExpression"] = "version = :read AND generation = :generation"
            put["ExpressionAttributeValues"] = {":read": {"N": str(head.stored_version)},
                                                ":generation": {"S": head.stored_generation or ""}}
        return put

    def _write(self, head: _Head, *others: dict[str, Any]) -> None:
        """Write the head (conditioned on its read version) and ``others`` in one transaction."""
        put = self._head_put(head)
        with map_dynamodb_errors(self.table_name):
            if others:
                self.client.transact_write_items(TransactItems=[{"Put": put}, *others])
            else:
                self.client.put_item(**put)
        self._local.last = (head.session_id, put["Item"])

    def _retrying(self, change: Callable[[bool], Any]) -> Any:
        """Run a read-modify-write until it is not overtaken by another writer (``change(first)``)."""
        for attempt in range(self.max_attempts):
            try:
                return change(attempt == 0)
            except _Conflict:
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))
        raise EngineError(f"DynamoDB table {self.table_name!r}: the session kept changing "
                          f"during {self.max_attempts} attempts")

    def _owned(self, session_id: str, owner: str, *, reuse: Callable[[_Head], bool] | None = None) -> _Head:
        head = self._head(session_id, owner, reuse=reuse)
        if head.live and head.owner != owner:
            raise foreign_session(session_id)
        return head

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Admission:
        """See :meth:`SessionStore.admit`."""

        def decided_on(head: _Head) -> bool:
            return head.version == version

        def attempt(first: bool) -> Admission:
            # The first attempt writes on the decision's own read; a lost race reads again.
            head = self._owned(session_id, owner, reuse=decided_on if first else None)
            repeated = self._repeated(head, call)
            if repeated is not None:
                return repeated
            if head.version != version:
                self._back_off(call.call_id)
                return "changed"
            used = getattr(call, "approval", None)  # a single-use approval the call uses up
            if used is not None:
                grant = next((approval for approval in head.approvals if approval.key == tuple(used)
                              and getattr(approval, "once", False)), None)
                if grant is None:
                    return "changed"  # used up by another call: decide again without it
                head.approvals.remove(grant)  # in the same conditional write as the reservation
            head.pending.append(call)
            self._write(head)
            return "admitted"

        admission: Admission = self._retrying(attempt)
        return admission

    def _back_off(self, call_id: str) -> None:
        """Pause before a call is decided again: a jittered, growing pause per call (AWS's advice
        for optimistic locking), so that writers racing on one session do not flood the table."""
        previous = getattr(self._local, "changed", ("", 0))
        count = previous[1] + 1 if previous[0] == call_id else 1
        self._local.changed = (call_id, count)
        time.sleep(random.uniform(0, min(0.2, 0.004 * 2 ** min(count, 6))))

    def _repeated(self, head: _Head, call: CallRecord) -> Admission | None:
        """``"completed"`` or ``"in_flight"`` when the call's key or external id was admitted before.

        The head holds the calls in flight and the latest completed ones; a completed call moved
        to a page left a marker per key and external id, written with the head that moved it.
        """
        in_head = _repeated_in(head, call)
        if in_head is not None or not head.pages:
            return in_head
        with map_dynamodb_errors(self.table_name):
            found = self.client.transact_get_items(TransactItems=[
                {"Get": {"TableName": self.table_name, "Key": self._key(head.session_id, key)}}
                for key in self._markers(head, call)])["Responses"]
        live = [answer for answer in found if answer.get("Item") and not self._expired(answer["Item"])]
        return "completed" if live else None

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """See :meth:`SessionStore.complete`."""

        def attempt(first: bool) -> bool:
            head = self._head(session_id, reuse=_holding(call_id) if first else None)
            call = next((record for record in head.pending if record.call_id == call_id), None)
            if not head.live or call is None:
                return False
            head.pending.remove(call)
            head.recent.append(replace(call, at=now))
            head.calls[call.action] = head.calls.get(call.action, 0) + 1
            if call.sums:
                bucket = head.totals.setdefault(call.action, {})
                for name, value in call.sums.items():
                    bucket[name] = bucket.get(name, 0) + value
            head.seen.update(call.labels)
            self._write(head, *self._page_out(head))
            return True

        counted: bool = self._retrying(attempt)
        return counted

    def _page_out(self, head: _Head) -> list[dict[str, Any]]:
        """Move the oldest completed calls to a new page when the head holds too many.

        The page and a marker per moved call key and external id are written in the head's
        transaction (at most 100 items: up to 49 calls move at a time).
        """
        if len(head.recent) <= self.page_size and len(head.state_json().encode("utf-8")) <= _MAX_HEAD_BYTES:
            return []
        moved = head.recent[:min(len(head.recent) // 2 or 1, _MOVED_AT_ONCE)]
        head.recent = head.recent[len(moved):]
        number = head.pages[-1][0] + 1 if head.pages else 1
        head.pages.append((number, max(record.at for record in moved)))
        page = {**self._key(head.session_id, f"{head.generation}#page#{number:010d}"),
                "records": {"S": json.dumps([_record_json(r) for r in moved], separators=(",", ":"))},
                **self._expiry()}
        markers = [{**self._key(head.session_id, key), **self._expiry()}
                   for record in moved for key in self._markers(head, record)]
        return [{"Put": {"TableName": self.table_name, "Item": item}} for item in (page, *markers)]

    def release(self, session_id: str, call_id: str) -> None:
        """See :meth:`SessionStore.release`."""

        def attempt(first: bool) -> None:
            head = self._head(session_id, reuse=_holding(call_id) if first else None)
            call = next((record for record in head.pending if record.call_id == call_id), None)
            if not head.live or call is None:
                return
            head.pending.remove(call)
            self._write(head)

        self._retrying(attempt)

    def add_labels(self, session_id: str, labels: Iterable[str], *, owner: str) -> None:
        """See :meth:`SessionStore.add_labels`."""
        fresh = set(labels)
        if not fresh:
            return

        def attempt(first: bool) -> None:
            head = self._owned(session_id, owner)
            if fresh <= head.seen:
                return
            head.seen.update(fresh)
            self._write(head)

        self._retrying(attempt)

    def approve(self, session_id: str, approval: Approval) -> None:
        """See :meth:`SessionStore.approve`."""

        def attempt(first: bool) -> None:
            head = self._owned(session_id, approval.principal)
            known = [index for index, existing in enumerate(head.approvals) if existing.key == approval.key]
            if known and _grant_terms(head.approvals[known[0]]) == _grant_terms(approval):
                return
            if known:
                head.approvals[known[0]] = approval  # the same call granted on other terms
            else:
                head.approvals.append(approval)
            self._write(head)

        self._retrying(attempt)

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """See :meth:`SessionStore.revoke`."""

        def attempt(first: bool) -> bool:
            head = self._head(session_id)
            if not head.live:
                return False
            if head.owner != approval.principal:
                raise foreign_session(session_id)
            kept = [existing for existing in head.approvals if existing.key != approval.key]
            if len(kept) == len(head.approvals):
                return False
            head.approvals = kept
            self._write(head)
            return True

        revoked: bool = self._retrying(attempt)
        return revoked

    def add_provenance(self, session_id: str, keys: Mapping[str, Iterable[str]], *, owner: str) -> None:
        """Record where values came from (``key`` -> source labels), as the other stores do.

        Raises:
            IdentityError: the session belongs to another owner.
        """
        fresh = {key: set(labels) for key, labels in keys.items() if labels}
        if not fresh:
            return

        def attempt(first: bool) -> None:
            head = self._owned(session_id, owner)
            if all(labels <= head.provenance.get(key, set()) for key, labels in fresh.items()):
                return
            for key, labels in fresh.items():
                head.provenance.setdefault(key, set()).update(labels)
            self._write(head)

        self._retrying(attempt)

    def provenance(self, session_id: str, keys: Collection[str]) -> dict[str, frozenset[str]]:
        """The source labels recorded for these value keys (keys never recorded are left out)."""
        head = self._head(session_id)
        return {key: frozenset(head.provenance[key]) for key in keys if key in head.provenance}

    def delete(self, session_id: str) -> None:
        """See :meth:`SessionStore.delete`: the head goes first, then the items of its generation."""
        with map_dynamodb_errors(self.table_name):
            old = self.client.delete_item(TableName=self.table_name, Key=self._key(session_id, _HEAD),
                                          ReturnValues="ALL_OLD").get("Attributes")
            if old is None:
                return
            prefix = old["generation"]["S"] + "#"
            for page in self.client.get_paginator("query").paginate(
                    TableName=self.table_name, ProjectionExpression="pk, sk",
                    KeyConditionExpression="pk = :session AND begins_with(sk, :generation)",
                    ExpressionAttributeValues={":session": {"S": session_id}, ":generation": {"S": prefix}}):
                keys = [{"DeleteRequest": {"Key": item}} for item in page.get("Items", [])]
                for start in range(0, len(keys), 25):
                    self._batch_delete(keys[start:start + 25])

    def _batch_delete(self, requests: list[dict[str, Any]]) -> None:
        for attempt in range(self.max_attempts):
            answer = self.client.batch_write_item(RequestItems={self.table_name: requests})
            requests = answer.get("UnprocessedItems", {}).get(self.table_name, [])
            if not requests:
                return
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** attempt)))
        # The head is already gone: what is left is unreachable, and its time to live removes it.
