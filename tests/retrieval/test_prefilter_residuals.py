"""Compiling a pre-filter skips what partial evaluation decided away (issue 18, row 7).

Residuals of other actions' policies come back as ``when { false }`` and chains
of ``true && ...``: skipped or folded before translation, with the same filter.
"""

from __future__ import annotations

import agentauthz as az

READ = """
@id("level") permit(principal, action == Action::"read", resource) when { resource.level <= principal.level };
@id("archived") forbid(principal, action == Action::"read", resource) when { resource.archived };
"""

OTHERS = "\n".join(
    f'@id("w{i}") permit(principal, action == Action::"write", resource) when {{ resource.level == {i} }};\n'
    f'@id("f{i}") forbid(principal, action == Action::"delete", resource) when {{ resource.level > {i} }};'
    for i in range(40))

SCHEMA = """
entity User = { level: Long };
entity Doc = { level: Long, archived: Bool };
action read, write, delete appliesTo { principal: User, resource: Doc };
"""

USER = az.Entity(uid=az.EntityUID("User", "ann"), attrs={"level": 2})


def _compiled(policies: str) -> az.Prefilter:
    authz = az.Authorizer.from_text(policies, schema=SCHEMA, entities=[USER], audit=[])
    with authz.acting_as(USER.uid):
        return az.compile_prefilter(authz, action="read", resource_type="Doc")


def test_policies_of_other_actions_leave_the_pre_filter_as_the_read_policies_alone_make_it() -> None:
    alone = _compiled(READ)
    among_others = _compiled(READ + OTHERS)
    # The schema requires archived: a present archived == false lets a document through.
    assert str(among_others) == str(alone) == "level <= 2 && archived == false"
    assert among_others.exact and alone.exact


def test_a_forbid_of_the_action_that_cannot_apply_removes_nothing() -> None:
    never = '@id("never") forbid(principal, action == Action::"read", resource) unless { true };'
    assert str(_compiled(READ + never)) == str(_compiled(READ))


def test_a_forbid_that_always_applies_still_denies_everything() -> None:
    always = '@id("all") forbid(principal, action == Action::"read", resource) when { true };'
    assert _compiled(READ + always).always_denied
