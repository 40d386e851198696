"""The retrieval pre-filter: translation of each Cedar operator, short-cuts, and each backend."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.retrieval._expr import Const, Expr, nnf
from agentauthz.retrieval._predicate import MetadataPredicate
from agentauthz.retrieval._prefilter import (
    ALWAYS_ALLOWED,
    ALWAYS_DENIED,
    ANCESTORS,
    FALSE,
    NO_PREFILTER,
    TRUE,
    And,
    Comparison,
    Contains,
    Has,
    In,
    InHierarchy,
    Like,
    Not,
    Or,
    Prefilter,
    all_of,
    any_of,
    compile_prefilter,
    negate,
)
from tests.retrieval.test_prefilter_soundness import bedrock_matches, mongo_matches
from tests.strategies import filter_expressions, filter_metadata

ALICE = az.Entity(
    uid=az.EntityUID("User", "alice"),
    attrs={"dept": "hr", "clearance": 3},
    parents=[az.EntityUID("Group", "staff")],
)
READ = 'permit(principal, action == Action::"read", resource)'


def compile_for(policies: str, *, user: az.Entity | az.EntityUID = ALICE, policy_errors: Any = "skip",
                **options: Any) -> Prefilter:
    """The pre-filter of ``policies`` for ``user``; by default with Cedar's own error semantics (the
    translation's bounds are tested on it), ``policy_errors="deny"`` for the Authorizer's default."""
    authz = az.Authorizer.from_text(policies, audit=[], policy_errors=policy_errors)
    with authz.acting_as(user):
        return compile_prefilter(authz, action=options.pop("action", "read"), **options)


def expression_of(condition: str, **options: Any) -> str:
    return str(compile_for(f"{READ} when {{ {condition} }};", **options))


# -- translation of each operator ------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('resource.dept == "hr"', 'dept == "hr"'),
        ('"hr" == resource.dept', 'dept == "hr"'),
        ("resource.dept == principal.dept", 'dept == "hr"'),
        ('resource.dept != "eng"', 'dept != "eng"'),
        ("resource.level == 2", "level == 2"),
        ("resource.public == true", "public == true"),
        ("resource.public", "public == true"),
        ('["public", "internal"].contains(resource.classification)',
         'classification in ["internal", "public"]'),
        ('resource.tags.contains("x")', 'tags.contains("x")'),
        ('resource.tags.containsAny(["x", "y"])', 'tags.contains("x") || tags.contains("y")'),
        ('["x", "y"].containsAny(resource.tags)', 'tags.contains("x") || tags.contains("y")'),
        ('resource.tags.containsAll(["x", "y"])', 'tags.contains("x") && tags.contains("y")'),
        ("resource.level <= 3", "level <= 3"),
        ("resource.level < 3", "level < 3"),
        ("resource.level > 3", "level > 3"),
        ("resource.level >= 3", "level >= 3"),
        ("3 >= resource.level", "level <= 3"),
        ("resource.level <= principal.clearance", "level <= 3"),
        ("resource.level < context.limit", "level < 4"),
        ("resource has secret", "has secret"),
        ('resource.title like "intro*"', 'title like "intro*"'),
        ('resource.title like "a\\*b"', 'title like "a\\\\*b"'),
        ("resource.owner == principal", 'owner == User::"alice"'),
        ("resource.readers.contains(principal)", 'readers.contains(User::"alice")'),
        ("principal in resource.readers",
         'readers == User::"alice" || readers.contains(User::"alice") || readers == Group::"staff" '
         '|| readers.contains(Group::"staff")'),
        ('!(resource.dept == "hr")', 'dept != "hr"'),
        ('resource.dept == "hr" && resource.level <= 3', 'dept == "hr" && level <= 3'),
        ('resource.dept == "hr" || resource.level <= 3', 'dept == "hr" || level <= 3'),
        ('if resource.public then true else resource.dept == "hr"',
         'public == true || (public == false && dept == "hr")'),
        ('resource has secret && resource.secret == "x"', 'secret == "x"'),
        ('context.flag && resource.dept == "hr"', 'dept == "hr"'),
        ('resource["odd key"] == 1', '"odd key" == 1'),
    ],
)
def test_each_operator_translates(condition: str, expected: str) -> None:
    assert expression_of(condition, context={"flag": True, "limit": 4}) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # Untranslatable, but an error (no permit) where the attribute is missing.
        ("resource.level + 1 > 3", "has level"),
        ("resource.tags.isEmpty()", "has tags"),
        ("resource.tags.containsAll([])", "has tags"),
        ("resource.dept == resource.owner_dept", "has dept && has owner_dept"),
        ('resource.classification in ["public"]', "has classification"),  # `in` wants entities
        ("resource.owner != principal", "has owner"),  # an id does not name the type
        ("!resource.readers.contains(principal)", "has readers"),
        ('!resource.readers.containsAny([User::"a"])', "has readers"),
        ('resource.price.lessThan(decimal("1.0"))', "has price"),
        ("resource.meta.level == 1", "has meta"),
        ("resource.n * 2 == resource.m", "has m && has n"),
        ('resource.hasTag("x")', "no pre-filter (no policy condition translates to a filter)"),
    ],
)
def test_untranslatable_conditions_over_approximate(condition: str, expected: str) -> None:
    assert expression_of(condition) == expected


def test_a_policy_that_cannot_match_is_dropped() -> None:
    # [].containsAny(...) is false for every list (and an error otherwise): nothing is allowed.
    assert compile_for(f'{READ} when {{ resource.tags.containsAny([]) }};') == ALWAYS_DENIED
    pre = compile_for(f'{READ} when {{ resource.tags.containsAny([]) }};\n'
                      f'{READ} when {{ resource.dept == "hr" }};')
    assert str(pre) == 'dept == "hr"'


def test_unless_negates_the_condition() -> None:
    pre = compile_for(f'{READ} when {{ resource.dept == "hr" }} unless {{ resource.level > 3 }};')
    assert str(pre) == 'dept == "hr" && level <= 3'


def test_scope_constraints_on_the_resource() -> None:
    assert str(compile_for('permit(principal, action, resource is Doc) when { resource.x == 1 };',
                           resource_type="Doc")) == "x == 1"
    assert compile_for('permit(principal, action, resource is Doc);', resource_type="Folder") == ALWAYS_DENIED
    assert compile_for('permit(principal, action, resource is Doc);', resource_type="Doc") == ALWAYS_ALLOWED
    assert not compile_for('permit(principal, action, resource is Doc);').filters  # type unknown
    assert compile_for('permit(principal, action, resource == Folder::"f");',
                       resource_type="Doc") == ALWAYS_DENIED


def test_hierarchy_needs_the_resource_type() -> None:
    typed = compile_for('permit(principal, action, resource in Folder::"f");', resource_type="Doc")
    assert typed.expression == InHierarchy(az.EntityUID("Folder", "f"))
    assert str(typed) == 'in Folder::"f"'
    # Without the type, the resource could be Folder::"f" itself: not translatable.
    assert compile_for('permit(principal, action, resource in Folder::"f");').expression == TRUE
    # ... and a forbid then only excludes what is certainly below the folder.
    pre = compile_for(f'{READ} when {{ resource.x == 1 }};\n'
                      'forbid(principal, action, resource in Folder::"f");')
    assert pre.to_callable({ANCESTORS: "anc"})({"x": 1, "anc": []})
    assert not pre.to_callable({ANCESTORS: "anc"})({"x": 1, "anc": ['Folder::"f"']})


def test_a_resource_that_is_the_folder_itself_is_kept_when_the_type_is_unknown() -> None:
    authz = az.Authorizer.from_text('permit(principal, action, resource in Folder::"f");', audit=[])
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read")
        folder = az.Entity(uid=az.EntityUID("Folder", "f"))
        assert authz.authorize(action="read", resource=folder).allowed
    assert pre.to_callable({ANCESTORS: "anc"})({"anc": []})


def test_principal_in_attribute_uses_the_ancestors_cedar_sees() -> None:
    org = az.Entity(uid=az.EntityUID("Org", "acme"))
    staff = az.Entity(uid=az.EntityUID("Group", "staff"), parents=[org.uid])
    authz = az.Authorizer.from_text(f"{READ} when {{ principal in resource.readers }};",
                                    entities=[staff, org], audit=[])
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read")
    keep = pre.to_callable()
    assert keep({"readers": ["acme"]}) and keep({"readers": ["staff"]}) and keep({"readers": "alice"})
    assert not keep({"readers": ["bob"]})


def test_the_bound_entity_and_extra_entities_are_used() -> None:
    policy = f"{READ} when {{ resource.dept == principal.dept }};"
    assert str(compile_for(policy)) == 'dept == "hr"'
    # Without the entity principal.dept is an error, which Cedar leaves unevaluated behind
    # the unknown resource.dept: the pre-filter over-approximates it.
    assert str(compile_for(policy, user=ALICE.uid)) == "has dept"
    authz = az.Authorizer.from_text(f"{READ} when {{ resource.readers.contains(context.team) }};", audit=[])
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read", context={"team": az.EntityUID("Team", "t1")},
                                entities=[az.Entity(uid=az.EntityUID("Team", "t1"))])
    assert str(pre) == 'readers.contains(Team::"t1")'


def test_template_links_are_compiled_for_the_linked_principal() -> None:
    store = az.PolicyStore.from_text(
        '@id("share") permit(principal == ?principal, action, resource) when { resource.x == 1 };',
        links=[az.TemplateLink(id="share-alice", template="share", principal=ALICE.uid)],
    )
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    with authz.acting_as(ALICE):
        assert str(compile_prefilter(authz, action="read")) == "x == 1"
    with authz.acting_as(az.EntityUID("User", "bob")):
        assert compile_prefilter(authz, action="read") == ALWAYS_DENIED


def test_schema_namespaces_and_context() -> None:
    schema = """
    namespace App {
      entity User = { dept: String };
      entity Doc = { dept: String, level: Long };
      action read appliesTo { principal: User, resource: Doc, context: { limit: Long } };
    }
    """
    policies = ('permit(principal, action == App::Action::"read", resource) '
                "when { resource.dept == principal.dept && resource.level < context.limit };")
    user = az.Entity(uid=az.EntityUID("App::User", "u"), attrs={"dept": "ops"})
    store = az.PolicyStore.from_text(policies, schema=schema, entities=[user])
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    with authz.acting_as(user.uid):
        pre = compile_prefilter(authz, action="read", context={"limit": 2}, resource_type="App::Doc")
        assert str(pre) == 'dept == "ops" && level < 2'
        # A context the schema rejects: partial evaluation fails, so no pre-filter (still sound).
        broken = compile_prefilter(authz, action="read", context={"limit": "two"})
        assert broken.expression == TRUE and not broken.always_denied and broken.note


# -- forbids, errors and short-cuts ----------------------------------------------------------


def test_forbids_apply_only_where_translated_exactly() -> None:
    pre = compile_for(f'{READ};\nforbid(principal, action, resource) when {{ resource.archived }};')
    assert pre.expression == Not(Comparison("archived", "==", True))
    keep = pre.to_callable()
    assert keep({}) and keep({"archived": False}) and keep({"archived": "yes"})
    assert not keep({"archived": True})
    # An untranslatable forbid is left out; an entity comparison is not negated.
    pre = compile_for(f'{READ} when {{ resource.x == 1 }};\n'
                      "forbid(principal, action, resource) when { resource.level + 1 > 3 };\n"
                      "forbid(principal, action, resource) when { resource.owner == principal };")
    assert str(pre) == "x == 1"


def test_a_forbid_reading_a_missing_attribute_never_excludes() -> None:
    # forbid errors where `level` is missing (and for non-numbers): it does not apply there.
    pre = compile_for(f'{READ} when {{ resource.dept == "hr" }};\n'
                      "forbid(principal, action, resource) when { resource.level > 3 };")
    keep = pre.to_callable()
    assert keep({"dept": "hr"}) and keep({"dept": "hr", "level": "high"}) and keep({"dept": "hr", "level": 1})
    assert not keep({"dept": "hr", "level": 9})
    # The dict backends cannot say "missing or <= 3": they leave that forbid out.
    assert pre.to_bedrock() == {"equals": {"key": "dept", "value": "hr"}}
    assert pre.to_mongo() == {"dept": {"$eq": "hr"}}


def test_by_default_a_forbid_reading_a_missing_attribute_excludes_the_document() -> None:
    # Authorizer(policy_errors="deny"): a forbid that errors denies, so it must be false to keep.
    pre = compile_for(f'{READ} when {{ resource.dept == "hr" }};\n'
                      "forbid(principal, action, resource) when { resource.level > 3 };",
                      policy_errors="deny")
    keep = pre.to_callable()
    assert keep({"dept": "hr", "level": 1})
    assert not keep({"dept": "hr"}) and not keep({"dept": "hr", "level": "high"})
    assert not keep({"dept": "hr", "level": 9})
    # Guarded by has, the forbid never errors: documents without the attribute are kept, exactly.
    guarded = "forbid(principal, action, resource) when { resource has level && resource.level > 3 };"
    pre = compile_for(f"{READ};\n{guarded}", policy_errors="deny")
    assert pre.exact and pre.to_callable()({}) and not pre.to_callable()({"level": 9})


def test_short_circuit_errors_are_followed() -> None:
    # `level <= 3 || dept == "hr"` errors when level is missing, even when dept is "hr".
    pre = compile_for(f'{READ} when {{ resource.dept == "hr" }};\n'
                      "forbid(principal, action, resource) when "
                      '{ resource.level <= 3 || resource.dept == "hr" };')
    keep = pre.to_callable()
    assert keep({"dept": "hr"})
    assert not keep({"dept": "hr", "level": 5}) and not keep({"dept": "hr", "level": 1})
    # `has x && x` never errors: a forbid guarded by has excludes exactly.
    pre = compile_for(f"{READ};\n"
                      "forbid(principal, action, resource) when { resource has hold && resource.hold };")
    assert pre.to_bedrock() == {"notEquals": {"key": "hold", "value": True}}


def test_false_is_bounded_with_errors_too() -> None:
    # !(a && b) is true where a is false, or a true and b false: a missing `level` errors.
    pre = compile_for(f"{READ} when {{ resource has dept }};\n"
                      "forbid(principal, action, resource) when "
                      '{ !(resource.level <= 3 && resource.dept == "hr") };')
    keep = pre.to_callable()
    assert keep({"dept": "eng"}) and keep({"dept": "hr", "level": 1})
    assert not keep({"dept": "eng", "level": 1}) and not keep({"dept": "hr", "level": 5})
    # `like` is false only for strings: a number errors, so the forbid does not apply.
    pre = compile_for(f"{READ} when {{ resource has title }};\n"
                      'forbid(principal, action, resource) when { !(resource.title like "a*") };')
    assert pre.to_callable()({"title": 5}) and pre.to_callable()({"title": "abc"})


def test_errors_found_during_partial_evaluation() -> None:
    # principal.bad errors before the resource is looked at: the permit never applies.
    assert compile_for(f"{READ} when {{ principal.bad == 1 || resource has x }};") == ALWAYS_DENIED
    # resource has x is looked at first: the unevaluated error on the right stays unknown.
    assert str(compile_for(f"{READ} when {{ resource has x || principal.bad == 1 }};")) == "no pre-filter " \
        "(no policy condition translates to a filter)"
    assert str(compile_for(f"{READ} when {{ resource has x && principal.bad }};")) == "has x"
    assert compile_for(f"{READ} when {{ context.missing }};") == ALWAYS_DENIED


def test_short_cuts() -> None:
    assert compile_for(f"{READ};") == ALWAYS_ALLOWED
    assert compile_for('permit(principal, action == Action::"write", resource);') == ALWAYS_DENIED
    assert compile_for(f"{READ};\nforbid(principal, action, resource);") == ALWAYS_DENIED
    assert compile_for("forbid(principal, action, resource) when { resource.x == 1 };") == ALWAYS_DENIED
    assert compile_for("") == ALWAYS_DENIED
    # A permit whose condition holds for every document, found by the translation itself.
    assert compile_for(f"{READ} when {{ resource has x || !(resource has x) }};") == ALWAYS_ALLOWED
    # A forbid that may apply keeps "always allowed" off.
    pre = compile_for(f"{READ};\nforbid(principal, action, resource) when {{ resource.x == 1 }};")
    assert not pre.always_allowed and str(pre) == "!(x == 1)"


def test_short_cut_renderings() -> None:
    # None means "send no filter": every document is allowed, or (not exact) nothing narrows.
    for constant in (ALWAYS_ALLOWED, NO_PREFILTER):
        assert constant.to_bedrock() is None and constant.to_mongo() is None
    assert ALWAYS_ALLOWED.to_bedrock(exact=True) is None
    with pytest.raises(az.ConfigurationError, match="exactly"):
        NO_PREFILTER.to_bedrock(exact=True)
    # No filter keeps nothing: the short cut is refused, never rendered as "no filter".
    exact = partial(ALWAYS_DENIED.to_bedrock, exact=True)
    for render in (ALWAYS_DENIED.to_bedrock, ALWAYS_DENIED.to_mongo, exact):
        with pytest.raises(az.AccessDenied):
            render()
    assert not any(constant.filters for constant in (ALWAYS_DENIED, ALWAYS_ALLOWED, NO_PREFILTER))
    assert ALWAYS_DENIED.exact and ALWAYS_ALLOWED.exact and not NO_PREFILTER.exact
    assert ALWAYS_DENIED.to_callable()({"x": 1}) is False
    assert ALWAYS_DENIED.to_document_filter()(SimpleNamespace(metadata={})) is False
    assert ALWAYS_DENIED.to_document_filter()(object()) is False
    assert ALWAYS_ALLOWED.to_callable()({}) is True and NO_PREFILTER.to_callable()({}) is True
    assert (str(ALWAYS_DENIED), str(ALWAYS_ALLOWED), str(NO_PREFILTER)) == (
        "always denied", "always allowed", "no pre-filter")
    assert ALWAYS_DENIED.always_denied and ALWAYS_ALLOWED.always_allowed
    assert not NO_PREFILTER.always_allowed and not NO_PREFILTER.always_denied
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALWAYS_DENIED.always_denied = False  # type: ignore[misc]


def test_a_filter_that_keeps_nothing_is_never_rendered_as_no_filter() -> None:
    # The contradiction shows only in negation normal form: it once rendered as None ("send no
    # filter"), which an exact caller reads as "every document is allowed".
    hr = Comparison("dept", "==", "hr")
    contradiction = Prefilter(And((hr, Not(Or((hr, Comparison("dept", "!=", "hr")))))), exact=True)
    for render in (contradiction.to_bedrock, contradiction.to_mongo,
                   partial(contradiction.to_bedrock, exact=True)):
        with pytest.raises(az.AccessDenied):
            render()
    assert contradiction.to_callable()({"dept": "hr"}) is False
    # Compiled, such policies are recognised as denying everything.
    assert compile_for(f'{READ} when {{ resource.dept == "hr" }};\n'
                       'forbid(principal, action, resource) when '
                       '{ resource.dept == "hr" || !(resource.dept == "hr") };') == ALWAYS_DENIED


def test_compiles_with_the_context_the_filter_decides_with() -> None:
    authz = az.Authorizer.from_text(
        f'{READ} when {{ context has session && context.session.seen.contains("pii") && resource.x == 1 }};',
        audit=[])
    with authz.acting_as(ALICE):
        assert compile_prefilter(authz, action="read") == ALWAYS_DENIED  # no session: no context.session
        with authz.session("s-1") as session:
            assert compile_prefilter(authz, action="read") == ALWAYS_DENIED  # nothing seen yet
            session.see("pii")
            assert str(compile_prefilter(authz, action="read")) == "x == 1"
            # A caller's context.session next to the bound one is refused, as the filter refuses it.
            for call in (partial(compile_prefilter, authz, action="read"),
                         partial(authz.filter, [], action="read", resource=lambda doc: doc)):
                with pytest.raises(az.ConfigurationError, match="session"):
                    call(context={"session": {"seen": []}})


def test_needs_a_bound_user() -> None:
    authz = az.Authorizer.from_text(f"{READ};", audit=[])
    with pytest.raises(az.IdentityError):
        compile_prefilter(authz, action="read")


class _RemoteEngine:
    """An engine without partial evaluation (like AVP)."""

    name = "remote"
    fingerprint = "f"

    def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
        return action if isinstance(action, az.EntityUID) else az.EntityUID("Action", action)

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        return [az.Decision(allowed=False) for _ in requests]

    async def adecide(self, requests: Sequence[az.Request],
                      entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        return self.decide(requests, entities)


def test_engines_without_partial_evaluation_give_no_prefilter() -> None:
    authz = az.Authorizer(_RemoteEngine(), audit=[])
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read")
    assert pre == NO_PREFILTER and "remote" in pre.note and str(pre).startswith("no pre-filter (")


@pytest.mark.parametrize("terms", [100, 300, 700, 2000])
def test_long_residuals_stay_bounded_and_sound(terms: int) -> None:
    # Lower bounds of `||` chains grow quadratically: they give way to the trivial bound; past
    # the JSON decoder's nesting there is no pre-filter; past Cedar's own limit, nothing is allowed.
    chain = " || ".join(f"resource.n == {i}" for i in range(terms))
    authz = az.Authorizer.from_text(f"{READ} when {{ {chain} }};\n"
                                    f"forbid(principal, action, resource) when {{ {chain} && resource.x }};",
                                    audit=[])
    docs = [{"id": str(i), "n": i} for i in (0, 5, terms - 1, terms)]
    with authz.acting_as(ALICE):
        started = time.perf_counter()
        pre = compile_prefilter(authz, action="read")
        assert time.perf_counter() - started < 5
        allowed = authz.filter(docs, action="read", resource=lambda d: az.Entity(
            uid=az.EntityUID("Doc", d["id"]), attrs={"n": d["n"]})).allowed
    keep = pre.to_callable()
    assert all(keep(doc) for doc in allowed)
    if terms == 100:
        assert pre.filters and not keep({"n": terms})


def test_deep_nesting() -> None:
    deep = "(" * 150 + 'resource.dept == "hr"' + ")" * 150
    assert compile_for(f"{READ} when {{ {deep} }};").expression == Comparison("dept", "==", "hr")


# -- the expression --------------------------------------------------------------------------


def test_simplification() -> None:
    a, b = Comparison("a", "==", 1), Comparison("b", "==", 2)
    assert all_of(a, TRUE) == a and all_of(a, FALSE) == FALSE and all_of() == TRUE
    assert any_of(a, FALSE) == a and any_of(a, TRUE) == TRUE and any_of() == FALSE
    assert all_of(a, Not(a)) == FALSE and any_of(a, Not(a)) == TRUE
    assert all_of(a, all_of(b, a)) == And((a, b))
    assert any_of(a, any_of(b, a)) == Or((a, b))
    assert all_of(Has("a"), a) == a and all_of(Has("a"), b) == And((Has("a"), b))
    assert all_of(a, any_of(a, b)) == a and any_of(a, all_of(a, b)) == a
    assert negate(negate(a)) == a and negate(TRUE) == FALSE


def test_rendering() -> None:
    expression = all_of(
        any_of(Comparison("dept", "==", "hr"), In("level", (1, 2)), Contains("tags", "x")),
        Not(Like("title", ("draft", None))),
        Has("owner"),
        Not(InHierarchy(az.EntityUID("Folder", 'a"b'))),
    )
    assert str(Prefilter(expression)) == (
        '(dept == "hr" || level in [1, 2] || tags.contains("x")) && !(title like "draft*") '
        '&& has owner && !(in Folder::"a\\"b")'
    )


# -- the callable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atom", "keeps", "drops"),
    [
        (Comparison("x", "==", 1), [{"x": 1}],
         [{"x": True}, {"x": "1"}, {"x": 1.5}, {}, {"x": None}, {"x": [1]}]),
        (Comparison("x", "==", True), [{"x": True}], [{"x": 1}, {"x": False}, {}]),
        (Comparison("x", "==", "a"), [{"x": "a"}], [{"x": ["a"]}, {"x": "b"}, {}]),
        (Comparison("x", "!=", "a"), [{"x": "b"}, {"x": 1}, {"x": ["a"]}], [{"x": "a"}, {}]),
        (Comparison("x", "<", 3), [{"x": 2}, {"x": -5}], [{"x": 3}, {"x": "2"}, {"x": True}, {"x": 2.5}, {}]),
        (Comparison("x", ">=", 3), [{"x": 3}], [{"x": 2}, {}]),
        (Comparison("o", "==", az.EntityUID("User", "a")),
         [{"o": "a"}, {"o": {"type": "User", "id": "a"}}, {"o": {"__entity": {"type": "User", "id": "a"}}},
          {"o": 'User::"a"'}],
         [{"o": "b"}, {"o": {"type": "Group", "id": "a"}}, {}]),
        (In("x", ("a", 2)), [{"x": "a"}, {"x": 2}], [{"x": "2"}, {"x": ["a"]}, {}]),
        (Contains("t", "a"), [{"t": ["a", "b"]}, {"t": ("a",)}, {"t": {"a"}}],
         [{"t": "a"}, {"t": ["b"]}, {}]),
        (Contains("t", 1), [{"t": [1]}], [{"t": [True]}, {"t": ["1"]}]),
        (Has("x"), [{"x": 0}, {"x": ""}, {"x": []}], [{}, {"x": None}]),
        (Like("x", ("ab", None, "c")), [{"x": "abc"}, {"x": "abXYc"}, {"x": "ab\nc"}],
         [{"x": "abd"}, {"x": 1}, {}]),
        (Like("x", ("a.c",)), [{"x": "a.c"}], [{"x": "abc"}]),
        (Not(Comparison("x", "==", "a")), [{"x": "b"}, {}, {"x": None}], [{"x": "a"}]),
    ],
)
def test_callable_follows_cedar_semantics(
    atom: Any, keeps: list[dict[str, Any]], drops: list[dict[str, Any]]
) -> None:
    keep = Prefilter(atom).to_callable()
    assert [keep(md) for md in keeps] == [True] * len(keeps)
    assert [keep(md) for md in drops] == [False] * len(drops)


def test_callable_keys_ancestors_and_unreadable_metadata() -> None:
    pre = Prefilter(all_of(Comparison("dept", "==", "hr"), InHierarchy(az.EntityUID("Folder", "f"))))
    assert pre.to_callable({"dept": "department"})({"department": "hr"})  # no ancestors key: not checked
    keep = pre.to_callable({"dept": "department", ANCESTORS: "path"})
    assert keep({"department": "hr", "path": ['Folder::"f"', 'Folder::"root"']})
    assert not keep({"department": "hr", "path": ['Folder::"g"']}) and not keep({"department": "hr"})
    negated = Prefilter(Not(InHierarchy(az.EntityUID("Folder", "f"))))
    assert negated.to_callable()({"path": ['Folder::"f"']})  # no ancestors key: not checked
    assert not negated.to_callable({ANCESTORS: "path"})({"path": ['Folder::"f"']})
    assert Prefilter(Comparison("x", "==", 1)).to_callable()("not a mapping")  # type: ignore[arg-type]

    class Exploding(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    assert Prefilter(Comparison("x", "==", 1)).to_callable()(Exploding())


def test_document_filter_reads_metadata() -> None:
    keep = Prefilter(Comparison("dept", "==", "hr")).to_document_filter({"dept": "d"})
    assert keep(SimpleNamespace(metadata={"d": "hr"}))
    assert not keep(SimpleNamespace(metadata={"d": "eng"}))
    assert keep(SimpleNamespace(page_content="no metadata"))  # authorization decides


def test_langchain_in_memory_vector_store_filter() -> None:
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    authz = az.Authorizer.from_text(f'{READ} when {{ resource.dept == principal.dept }};\n'
                                    "forbid(principal, action, resource) when "
                                    "{ resource has archived && resource.archived };",
                                    audit=[])
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_documents([
        Document(id=f"d{i}", page_content=f"text {i}", metadata=metadata)
        for i, metadata in enumerate([{"dept": "hr"}, {"dept": "eng"}, {"dept": "hr", "archived": True},
                                      {"dept": "hr", "archived": False}, {}])
    ])
    with authz.acting_as(ALICE):
        pre = compile_prefilter(authz, action="read")
        found = store.similarity_search("text", k=10, filter=pre.to_document_filter())
        allowed = authz.filter(
            found, action="read",
            resource=lambda d: az.Entity(uid=az.EntityUID("Doc", d.id), attrs=d.metadata)).allowed
    assert sorted(str(d.id) for d in found) == ["d0", "d3"]
    assert allowed == found


# -- Bedrock ---------------------------------------------------------------------------------

RETRIEVAL_FILTER = botocore.session.get_session().get_service_model("bedrock-agent-runtime").shape_for(
    "RetrievalFilter")


def assert_valid_bedrock(flt: Mapping[str, Any]) -> None:
    report = ParamValidator().validate(flt, RETRIEVAL_FILTER)
    assert not report.has_errors(), report.generate_report()

    def walk(node: Mapping[str, Any]) -> None:
        assert len(node) == 1
        ((op, body),) = node.items()
        if op in ("andAll", "orAll"):
            assert len(body) >= 2
            for item in body:
                walk(item)
        else:
            assert 1 <= len(body["key"]) <= 100

    walk(flt)


BEDROCK_CASES = [
    (Comparison("x", "==", "a"), {"equals": {"key": "x", "value": "a"}}),
    # Present and different: notIn keeps only documents with the key (notEquals keeps the others too).
    (Comparison("x", "!=", "a"), {"notIn": {"key": "x", "value": ["a"]}}),
    (Comparison("x", "<", 3), {"lessThan": {"key": "x", "value": 3}}),
    (Comparison("x", "<=", 3), {"lessThanOrEquals": {"key": "x", "value": 3}}),
    (Comparison("x", ">", 3), {"greaterThan": {"key": "x", "value": 3}}),
    (Comparison("x", ">=", 3), {"greaterThanOrEquals": {"key": "x", "value": 3}}),
    (Comparison("o", "==", az.EntityUID("User", "a")), {"equals": {"key": "o", "value": "a"}}),
    (In("x", ("a", "b")), {"in": {"key": "x", "value": ["a", "b"]}}),
    (Contains("t", "a"), {"listContains": {"key": "t", "value": "a"}}),
    (Like("x", ("abc",)), {"equals": {"key": "x", "value": "abc"}}),
    (Like("x", ("ab", None)), {"stringContains": {"key": "x", "value": "ab"}}),
    (Like("x", (None, "a", None, "bcd", None)), {"stringContains": {"key": "x", "value": "bcd"}}),
    # Negations: documents without the key must stay.
    (Not(Comparison("x", "==", "a")), {"notEquals": {"key": "x", "value": "a"}}),
    (Not(In("x", ("a", "b"))),
     {"andAll": [{"notEquals": {"key": "x", "value": "a"}}, {"notEquals": {"key": "x", "value": "b"}}]}),
    (all_of(Has("x"), Not(In("x", ("a", "b")))), {"notIn": {"key": "x", "value": ["a", "b"]}}),
    (all_of(Has("x"), Not(Comparison("x", "<", 3))), {"greaterThanOrEquals": {"key": "x", "value": 3}}),
    (all_of(Has("x"), Not(Comparison("x", "!=", "a"))), {"equals": {"key": "x", "value": "a"}}),
    (any_of(Comparison("x", "==", "a"), Comparison("y", "==", 1)),
     {"orAll": [{"equals": {"key": "x", "value": "a"}}, {"equals": {"key": "y", "value": 1}}]}),
]


@pytest.mark.parametrize(("expression", "expected"), BEDROCK_CASES)
def test_bedrock_rendering(expression: Any, expected: dict[str, Any]) -> None:
    rendered = Prefilter(expression).to_bedrock()
    assert rendered == expected
    assert_valid_bedrock(rendered)


@pytest.mark.parametrize(
    "expression",
    [Has("x"), Not(Has("x")), Not(Comparison("x", "<", 3)), Not(Comparison("x", "!=", "a")),
     Not(Contains("t", "a")), Not(Like("x", ("a", None))), Like("x", (None,)),
     InHierarchy(az.EntityUID("F", "f")), Comparison("k" * 101, "==", 1)],
)
def test_bedrock_leaves_out_what_it_cannot_say(expression: Any) -> None:
    assert Prefilter(any_of(expression, Comparison("never", "==", 0))).to_bedrock() is None


def test_bedrock_keys_ancestors_and_collapsing() -> None:
    pre = Prefilter(all_of(Comparison("dept", "==", "hr"), InHierarchy(az.EntityUID("Folder", "f")),
                           any_of(Comparison("a", "==", 1), Has("b"))))
    assert pre.to_bedrock({"dept": "department"}) == {"equals": {"key": "department", "value": "hr"}}
    rendered = pre.to_bedrock({ANCESTORS: "folders"})
    assert rendered == {"andAll": [{"equals": {"key": "dept", "value": "hr"}},
                                   {"listContains": {"key": "folders", "value": 'Folder::"f"'}}]}
    assert_valid_bedrock(rendered)


def test_compiled_filters_validate_against_the_bedrock_model_and_a_stubbed_retrieve() -> None:
    policies = "\n".join([
        f'{READ} when {{ resource.dept == principal.dept && resource.level <= principal.clearance }};',
        f'{READ} when {{ resource.owner == principal || ["public"].contains(resource.classification) }};',
        f'{READ} when {{ resource.tags.containsAny(["x", "y"]) || resource.title like "faq*" }};',
        'permit(principal, action == Action::"read", resource in Folder::"shared");',
        'forbid(principal, action, resource) when { resource has hold && resource.hold };',
        'forbid(principal, action, resource) when { ["secret", "top"].contains(resource.classification) };',
    ])
    pre = compile_for(policies, resource_type="Doc")
    rendered = pre.to_bedrock({"dept": "department", ANCESTORS: "folders"})
    assert rendered is not None
    assert_valid_bedrock(rendered)
    assert bedrock_matches(rendered, {"department": "hr", "level": 1})
    assert not bedrock_matches(rendered, {"department": "hr", "level": 1, "hold": True})
    client = boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    params = {"knowledgeBaseId": "KB12345678", "retrievalQuery": {"text": "q"},
              "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 5,
                                                                       "filter": rendered}}}
    with Stubber(client) as stub:
        stub.add_response("retrieve", {"retrievalResults": []}, params)
        assert client.retrieve(**params)["retrievalResults"] == []
    # The model does reject what Bedrock would: an andAll of one member, a missing value.
    with pytest.raises(ParamValidationError):
        client.retrieve(**{**params, "retrievalConfiguration": {"vectorSearchConfiguration": {
            "filter": {"andAll": [{"equals": {"key": "a", "value": 1}}]}}}})
    with pytest.raises(ParamValidationError):
        client.retrieve(**{**params, "retrievalConfiguration": {"vectorSearchConfiguration": {
            "filter": {"equals": {"key": "a"}}}}})


# -- Mongo -----------------------------------------------------------------------------------

MONGO_CASES = [
    (Comparison("x", "==", "a"), {"x": {"$eq": "a"}}),
    (Comparison("x", "!=", "a"), {"x": {"$ne": "a"}}),
    (Comparison("x", "<", 3), {"x": {"$lt": 3}}),
    (Comparison("x", "<=", 3), {"x": {"$lte": 3}}),
    (Comparison("x", ">", 3), {"x": {"$gt": 3}}),
    (Comparison("x", ">=", 3), {"x": {"$gte": 3}}),
    (Comparison("o", "==", az.EntityUID("User", "a")), {"o": {"$eq": "a"}}),
    (In("x", ("a", "b")), {"x": {"$in": ["a", "b"]}}),
    (Contains("t", "a"), {"t": {"$in": ["a"]}}),
    (Like("x", ("abc",)), {"x": {"$eq": "abc"}}),
    (Not(Comparison("x", "==", "a")), {"x": {"$ne": "a"}}),
    (Not(In("x", ("a", "b"))), {"x": {"$nin": ["a", "b"]}}),
    (Not(Contains("t", "a")), {"t": {"$nin": ["a"]}}),
    (all_of(Has("x"), Not(Comparison("x", "<", 3))), {"x": {"$gte": 3}}),
    (all_of(Comparison("x", "==", "a"), any_of(Comparison("y", "==", 1), Comparison("z", "==", 2))),
     {"$and": [{"x": {"$eq": "a"}}, {"$or": [{"y": {"$eq": 1}}, {"z": {"$eq": 2}}]}]}),
]


@pytest.mark.parametrize(("expression", "expected"), MONGO_CASES)
def test_mongo_rendering(expression: Any, expected: dict[str, Any]) -> None:
    assert Prefilter(expression).to_mongo() == expected


def test_mongo_negations_where_ne_skips_missing_keys() -> None:
    forbid = Prefilter(all_of(Comparison("dept", "==", "hr"), Not(Comparison("hold", "==", True)),
                              Not(In("c", ("secret",)))))
    assert forbid.to_mongo() == {"$and": [{"dept": {"$eq": "hr"}}, {"hold": {"$ne": True}},
                                          {"c": {"$nin": ["secret"]}}]}
    assert forbid.to_mongo(ne_matches_missing=False) == {"dept": {"$eq": "hr"}}
    # Where the conjunction already requires the key, $ne is exact either way.
    present = Prefilter(all_of(Has("hold"), Not(Comparison("hold", "==", True))))
    assert present.to_mongo(ne_matches_missing=False) == {"hold": {"$ne": True}}


def test_mongo_keys_and_unaddressable_keys() -> None:
    pre = Prefilter(all_of(Comparison("dept", "==", "hr"), Comparison("level", "<", 3),
                           InHierarchy(az.EntityUID("Folder", "f"))))
    assert pre.to_mongo({"dept": "$where", "level": "meta.level"}) is None
    assert pre.to_mongo({"dept": "department", ANCESTORS: "folders"}) == {"$and": [
        {"department": {"$eq": "hr"}}, {"level": {"$lt": 3}}, {"folders": {"$in": ['Folder::"f"']}}]}
    assert mongo_matches(pre.to_mongo({ANCESTORS: "folders"}) or {},
                         {"dept": "hr", "level": 1, "folders": ['Folder::"f"']})


def test_renderings_agree_on_a_compiled_prefilter() -> None:
    pre = compile_for(
        f'{READ} when {{ resource.dept == "hr" || resource.tags.contains("public") }};\n'
        'forbid(principal, action, resource) when { resource.classification == "secret" };')
    documents: list[dict[str, Any]] = [{"dept": "hr"}, {"dept": "eng"}, {"tags": ["public"]},
                 {"dept": "hr", "classification": "secret"}, {"tags": ["x"], "classification": "open"}, {}]
    expected = [True, False, True, False, False, False]
    assert [pre.to_callable()(d) for d in documents] == expected
    assert [bedrock_matches(pre.to_bedrock() or {}, d) for d in documents] == expected
    assert [mongo_matches(pre.to_mongo() or {}, d) for d in documents] == expected
    assert json.loads(json.dumps(pre.to_bedrock())) == pre.to_bedrock()


# -- the algebra's short cuts (issue 18, row 7) -------------------------------------------------------


def _meaning(expr: Expr, metadata: Mapping[str, Any]) -> bool:
    """What an expression's nodes say, atoms read by the metadata predicate one by one."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, And):
        return all(_meaning(item, metadata) for item in expr.items)
    if isinstance(expr, Or):
        return any(_meaning(item, metadata) for item in expr.items)
    if isinstance(expr, Not):
        return not _meaning(expr.item, metadata)
    return MetadataPredicate(expr, {})(metadata)


@settings(max_examples=200, deadline=None)
@given(st.lists(filter_expressions, max_size=4), filter_metadata)
def test_all_of_any_of_and_nnf_keep_what_the_nodes_mean(items: list[Expr], metadata: dict[str, Any]) -> None:
    expected_all = all(_meaning(item, metadata) for item in items)
    expected_any = any(_meaning(item, metadata) for item in items)
    assert _meaning(all_of(*items), metadata) is expected_all
    assert _meaning(any_of(*items), metadata) is expected_any
    assert MetadataPredicate(nnf(all_of(*items)), {})(metadata) is expected_all
    assert _meaning(negate(any_of(*items)), metadata) is not expected_any


def test_a_presence_that_justifies_an_absorbed_disjunction_is_kept() -> None:
    # `has b && (has b || b == "x")`: absorption drops the disjunction, and the disjunction must not
    # then count as proof that b is present (both went, leaving `true`: a document without b matched).
    disjunction = Or((Has("b"), Comparison("b", "==", "x")))
    assert all_of(Has("b"), disjunction) == Has("b")
    assert MetadataPredicate(nnf(all_of(Has("b"), Not(Not(disjunction)))), {})({}) is False
    assert MetadataPredicate(nnf(all_of(Has("b"), Not(Not(disjunction)))), {})({"b": "y"}) is True
