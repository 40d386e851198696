"""Property tests: the retrieval pre-filter never drops a document that authorization allows.

For random policies of a family (equality, sets, owners, lists, numbers, ``has``, ``like``,
hierarchy, forbids, ``&&`` / ``||`` / ``!`` / ``if``) and random documents whose Cedar
attributes are built from their metadata (keys sometimes missing), every rendering of the
pre-filter keeps every allowed document: ``post(pre(docs)) == post(docs)`` where ``post``
is ``Authorizer.filter``. The callable is checked on metadata of any type; the Bedrock and
Mongo dicts (read by the small evaluators below, which follow the services' documented
semantics) on metadata that keeps each key's type, as their docstrings require.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import botocore.session
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.retrieval._prefilter import ANCESTORS, Prefilter, compile_prefilter
from tests.strategies import prefilter_documents, prefilter_policy_sets, prefilter_scoped_policy_sets

ALICE = az.Entity(
    uid=az.EntityUID("User", "alice"),
    attrs={"dept": "hr", "clearance": 3},
    parents=[az.EntityUID("Group", "staff")],
)
KEYS = {ANCESTORS: "ancestors"}
#: How the Mongo-style stores test for a key: not at all (Chroma), $exists (Pinecone), null (MongoDB).
MONGO_PRESENCE: tuple[Any, ...] = (None, "exists", "null")
# AGENTAUTHZ_PREFILTER_EXAMPLES=5000 for a deeper search than the default run's.
SETTINGS = settings(max_examples=int(os.environ.get("AGENTAUTHZ_PREFILTER_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


RETRIEVAL_FILTER = botocore.session.get_session().get_service_model(
    "bedrock-agent-runtime").shape_for("RetrievalFilter")


@dataclass(frozen=True)
class Doc:
    """A retrieved chunk: an id and its metadata (like a LangChain Document)."""

    id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def resource_of(doc: Doc) -> az.Entity:
    """The application's mapping from metadata to the Cedar resource (the documented convention)."""
    attrs: dict[str, Any] = {}
    owner_type = doc.metadata.get("owner_type")
    readers_type = doc.metadata.get("readers_type")
    owner_type = owner_type if owner_type in ("User", "Group") else "User"
    readers_type = readers_type if readers_type in ("User", "Group") else "User"
    for key, value in doc.metadata.items():
        if value is None or key in ("ancestors", "owner_type", "readers_type"):
            continue
        if key == "owner" and isinstance(value, str):
            value = az.EntityUID(owner_type, value)
        elif key == "readers" and isinstance(value, list):
            value = [
                az.EntityUID("Group" if x == "staff" else readers_type, x)
                if isinstance(x, str) else x
                for x in value
            ]
        attrs[key] = value
    ancestors = doc.metadata.get("ancestors")
    parents = [az.EntityUID.parse(text) for text in ancestors] if isinstance(ancestors, list) else []
    return az.Entity(uid=az.EntityUID("Doc", doc.id), attrs=attrs, parents=parents)


def buildable(doc: Doc) -> bool:
    try:
        resource_of(doc)
    except az.AuthzError:
        return False
    return True


def as_docs(metadata: Sequence[Mapping[str, Any]]) -> list[Doc]:
    return [Doc(f"d{index}", item) for index, item in enumerate(metadata)]


# -- evaluators of the backends' filter languages, for tests ---------------------------------

_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """Equality without Python's bool/int confusion."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _order(left: Any, op: str, right: Any) -> bool:
    same_kind = (_number(left) and _number(right)) or (isinstance(left, str) and isinstance(right, str))
    if not same_kind:
        return False
    return bool({"lt": left < right, "lte": left <= right, "gt": left > right, "gte": left >= right}[op])


def bedrock_matches(flt: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """A Bedrock ``RetrievalFilter`` over metadata, as the API reference describes it."""
    assert len(flt) == 1, flt
    ((op, body),) = flt.items()
    if op in ("andAll", "orAll"):
        assert isinstance(body, list) and len(body) >= 2, flt
        results = [bedrock_matches(item, metadata) for item in body]
        return all(results) if op == "andAll" else any(results)
    assert set(body) == {"key", "value"}, flt
    value = metadata.get(body["key"], _MISSING)
    if value is None:
        value = _MISSING
    target = body["value"]
    if op == "notEquals":  # documented: also documents without the key
        return value is _MISSING or not _same(value, target)
    if value is _MISSING:
        return False
    if op == "equals":
        return _same(value, target)
    if op == "in":
        return any(_same(value, item) for item in target)
    if op == "notIn":
        return not any(_same(value, item) for item in target)
    if op in ("greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals"):
        short = {"greaterThan": "gt", "greaterThanOrEquals": "gte",
                 "lessThan": "lt", "lessThanOrEquals": "lte"}[op]
        return _number(value) and _number(target) and _order(value, short, target)
    if op == "listContains":
        return isinstance(value, list) and any(_same(item, target) for item in value)
    if op == "stringContains":
        if isinstance(value, str):
            return target in value
        return isinstance(value, list) and any(isinstance(i, str) and target in i for i in value)
    if op == "startsWith":
        return isinstance(value, str) and value.startswith(target)
    raise AssertionError(f"unknown RetrievalFilter operator {op}")


def mongo_matches(
    flt: Mapping[str, Any], metadata: Mapping[str, Any], *, ne_matches_missing: bool = True
) -> bool:
    """A Mongo-style filter over metadata with MongoDB's rules (array fields match elementwise).

    ``ne_matches_missing=False`` reads ``$ne`` / ``$nin`` as stores that only match
    documents having the key. As in MongoDB, ``$exists`` sees a key holding null
    (Pinecone stores no nulls), and ``{"$eq": null}`` matches a missing key or a
    null, ``{"$ne": null}`` a key holding something else.
    """
    assert len(flt) == 1, flt
    ((name, body),) = flt.items()
    if name in ("$and", "$or"):
        assert isinstance(body, list) and len(body) >= 2, flt
        results = [mongo_matches(item, metadata, ne_matches_missing=ne_matches_missing) for item in body]
        return all(results) if name == "$and" else any(results)
    assert not name.startswith("$"), flt
    assert isinstance(body, dict) and len(body) == 1, flt
    ((op, target),) = body.items()
    raw = metadata.get(name, _MISSING)
    value = _MISSING if raw is None else raw
    if op == "$exists":
        assert isinstance(target, bool), flt
        return (raw is not _MISSING) == target
    if target is None:
        assert op in ("$eq", "$ne"), flt
        return (value is _MISSING) == (op == "$eq")

    def equal(v: Any, t: Any) -> bool:
        return _same(v, t) or (isinstance(v, list) and any(_same(item, t) for item in v))

    def within(v: Any, targets: list[Any]) -> bool:
        return any(equal(v, t) for t in targets)

    if op in ("$ne", "$nin"):
        if value is _MISSING:
            return ne_matches_missing
        return not equal(value, target) if op == "$ne" else not within(value, target)
    if value is _MISSING:
        return False
    if op == "$eq":
        return equal(value, target)
    if op == "$in":
        return within(value, target)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        items = value if isinstance(value, list) else [value]
        return any(_order(item, op[1:], target) for item in items)
    raise AssertionError(f"unknown operator {op}")


# -- the property ----------------------------------------------------------------------------


def authorizer(policies: str) -> az.Authorizer:
    return az.Authorizer.from_text(policies, audit=[])


def post(authz: az.Authorizer, docs: Sequence[Doc], context: Mapping[str, Any]) -> list[Doc]:
    return authz.filter(docs, action="read", resource=resource_of, context=context).allowed


def alice_prefilter(policies: str, metadata: Sequence[Mapping[str, Any]], policy_errors: Any,
                    context: Mapping[str, Any]) -> tuple[Prefilter, list[Doc], list[Doc]]:
    """The pre-filter of ``Doc`` reads compiled for ALICE, the documents, and those ``filter`` allows."""
    authz = az.Authorizer.from_text(policies, audit=[], policy_errors=policy_errors)
    docs = as_docs(metadata)
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read", context=context, resource_type="Doc")
        return pre, docs, post(authz, docs, context)


#: The reader and the permit of the missing-key tests (test_bedrock_missing_keys, test_mongo_missing_keys).
ANN = az.EntityUID("User", "ann")
READ = '@id("read") permit(principal, action == Action::"read", resource);'


def ann_authorizer(forbid: str, **options: Any) -> az.Authorizer:
    """An Authorizer of ``READ`` and ``forbid`` (no audit); ``options`` as ``from_text`` takes them."""
    return az.Authorizer.from_text(f"{READ}\n{forbid}", audit=[], **options)


def ann_exact_prefilter(forbid: str, **options: Any) -> Prefilter:
    """The pre-filter of ``READ`` and ``forbid`` compiled for ann, which must be exact."""
    with (authz := ann_authorizer(forbid, **options)).acting_as(ANN):
        pre = compile_prefilter(authz, action="read")
    assert pre.exact, str(pre)
    return pre


def compiled(authz: az.Authorizer, context: Mapping[str, Any], typed: bool) -> Prefilter:
    pre = compile_prefilter(authz, action="read", context=context,
                            resource_type="Doc" if typed else None)
    event("always denied" if pre.always_denied else "always allowed" if pre.always_allowed
          else "filters" if pre.filters else "no pre-filter")
    return pre


def check_keeps_allowed(
    authz: az.Authorizer, docs: list[Doc], context: Mapping[str, Any], pre: Prefilter,
    keep: Callable[[Mapping[str, Any]], bool], label: str,
) -> None:
    allowed = post(authz, docs, context)
    kept = [doc for doc in docs if keep(doc.metadata)]
    dropped = [doc for doc in allowed if doc not in kept]
    assert not dropped, f"{label} {pre} dropped allowed {dropped}"
    assert post(authz, kept, context) == allowed


contexts = st.fixed_dictionaries({"flag": st.booleans(), "limit": st.integers(0, 6)})


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents(wild=True), context=contexts,
       typed=st.booleans())
def test_callable_never_drops_an_allowed_document(
    policies: str, metadata: list[dict[str, Any]], context: dict[str, Any], typed: bool
) -> None:
    authz = authorizer(policies)
    docs = as_docs(metadata)
    with authz.acting_as(ALICE):
        pre = compiled(authz, context, typed)
        allowed = post(authz, docs, context)
        if pre.always_denied:
            assert allowed == []
        if pre.always_allowed:  # every document whose resource can be built
            assert allowed == [doc for doc in docs if buildable(doc)]
        check_keeps_allowed(authz, docs, context, pre, pre.to_callable(KEYS), "callable")
        check_keeps_allowed(authz, docs, context, pre, pre.to_callable(), "callable without ancestors")
        keep_document = pre.to_document_filter(KEYS)
        assert [d for d in docs if keep_document(d)] == [d for d in docs if pre.to_callable(KEYS)(d.metadata)]


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents(), context=contexts,
       typed=st.booleans())
def test_bedrock_and_mongo_filters_never_drop_an_allowed_document(
    policies: str, metadata: list[dict[str, Any]], context: dict[str, Any], typed: bool
) -> None:
    authz = authorizer(policies)
    docs = as_docs(metadata)
    with authz.acting_as(ALICE):
        pre = compiled(authz, context, typed)
        if pre.always_denied:  # no filter keeps nothing: rendering one is refused
            assert post(authz, docs, context) == []
            return
        for keys in (KEYS, None):
            bedrock = pre.to_bedrock(keys)
            if bedrock is not None:
                report = ParamValidator().validate(bedrock, RETRIEVAL_FILTER)
                assert not report.has_errors(), report.generate_report()
                check_keeps_allowed(authz, docs, context, pre, partial(bedrock_matches, bedrock),
                                    f"bedrock {bedrock}")
            mongo = pre.to_mongo(keys)
            if mongo is not None:
                check_keeps_allowed(authz, docs, context, pre, partial(mongo_matches, mongo),
                                    f"mongo {mongo}")
            for ne_matches_missing in (True, False):
                for presence in MONGO_PRESENCE:
                    found = pre.to_mongo(keys, ne_matches_missing=ne_matches_missing, presence=presence)
                    if found is not None:
                        check_keeps_allowed(
                            authz, docs, context, pre,
                            partial(mongo_matches, found, ne_matches_missing=ne_matches_missing),
                            f"mongo ($ne matches missing: {ne_matches_missing}, presence {presence}) {found}")


@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples * 2 // 3))
@given(policies=prefilter_policy_sets, metadata=prefilter_documents(wild=True), context=contexts)
def test_filter_equals_authorizing_each_item(
    policies: str, metadata: list[dict[str, Any]], context: dict[str, Any]
) -> None:
    authz = authorizer(policies)
    docs = as_docs(metadata)
    with authz.acting_as(ALICE):
        one_by_one = [
            doc for doc in docs
            if buildable(doc)
            and authz.authorize(action="read", resource=resource_of(doc), context=context).allowed
        ]
        assert post(authz, docs, context) == one_by_one


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents(wild=True), context=contexts,
       typed=st.booleans())
def test_an_exact_callable_keeps_exactly_the_allowed_documents(
    policies: str, metadata: list[dict[str, Any]], context: dict[str, Any], typed: bool
) -> None:
    authz = authorizer(policies)
    docs = as_docs(metadata)
    with authz.acting_as(ALICE):
        pre = compiled(authz, context, typed)
        allowed = post(authz, docs, context)
    event("exact" if pre.exact else "not exact")
    if pre.exact:
        keep = pre.to_callable(KEYS)
        assert [doc for doc in docs if buildable(doc) and keep(doc.metadata)] == allowed, str(pre)


# -- what the compile skips (issue 18, row 7) ---------------------------------------------------------


@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 2))  # two engines per example
@given(policies=prefilter_scoped_policy_sets, metadata=prefilter_documents(wild=True), context=contexts,
       policy_errors=st.sampled_from(("deny", "skip")))
def test_a_prefilter_of_the_policies_in_scope_never_drops_an_allowed_document(
    policies: str, metadata: list[dict[str, Any]], context: dict[str, Any], policy_errors: str
) -> None:
    # With resource_type the partial evaluation sees only the policies whose scope can match; the
    # others (some failing, with policy_errors="deny") must not change what the filter allows.
    docs = as_docs(metadata)
    for slicing in (True, False):
        authz = az.Authorizer(az.LocalEngine(az.PolicyStore.from_text(policies), slicing=slicing),
                              audit=[], policy_errors=policy_errors)
        with authz.acting_as(ALICE):
            pre = compiled(authz, context, typed=True)
            allowed = post(authz, docs, context)
            if pre.always_denied:
                assert allowed == []
            check_keeps_allowed(authz, docs, context, pre, pre.to_callable(KEYS), f"slicing={slicing}")
        if pre.exact:
            keep = pre.to_callable(KEYS)
            assert [doc for doc in docs if buildable(doc) and keep(doc.metadata)] == allowed, str(pre)


@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 3))
@given(policies=prefilter_policy_sets, context=contexts, typed=st.booleans(),
       policy_errors=st.sampled_from(("deny", "skip")))
def test_a_policy_written_twice_compiles_to_the_same_prefilter(
    policies: str, context: dict[str, Any], typed: bool, policy_errors: str
) -> None:
    # Residuals alike are translated once: the copies (other ids, same text) change nothing.
    def prefilter(text: str) -> Prefilter:
        authz = az.Authorizer.from_text(text, audit=[], policy_errors=policy_errors)
        with authz.acting_as(ALICE):
            return compiled(authz, context, typed)

    once = prefilter(policies)
    twice = prefilter(f"{policies}\n{policies}")
    assert (twice.expression, twice.exact, twice.always_allowed, twice.always_denied) == (
        once.expression, once.exact, once.always_allowed, once.always_denied)
