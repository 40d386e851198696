"""A principal with many template links (issue 18, row 4): the request's few found by (principal, resource).

Links that name one principal and one resource exactly are indexed by the pair;
those naming the principal and no single resource stay with the principal. The
sliced engine must decide exactly as the whole set, whatever the mix.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.policy._slicing import PER_PRINCIPAL_LINKS, SliceIndex

TEMPLATES = """
@id("exact") permit(principal == ?principal, action == Action::"read", resource == ?resource);
@id("folder") permit(principal == ?principal, action == Action::"read", resource in ?resource);
@id("any-doc") permit(principal == ?principal, action == Action::"write", resource);
@id("block") forbid(principal == ?principal, action, resource == ?resource) when { context has stop };
"""

DOCS = [az.EntityUID("Doc", f"d{i}") for i in range(30)]
FOLDERS = [az.EntityUID("Folder", f"f{i}") for i in range(4)]
ENTITIES = [az.Entity(uid=folder) for folder in FOLDERS] + [
    az.Entity(uid=doc, parents=[FOLDERS[i % 4]]) for i, doc in enumerate(DOCS)]
USERS = [az.EntityUID("User", name) for name in ("busy", "quiet")]

links = st.lists(
    st.tuples(st.sampled_from(["exact", "folder", "any-doc", "block"]), st.sampled_from(USERS),
              st.integers(0, 29)),
    min_size=2 * PER_PRINCIPAL_LINKS + 2, max_size=80)  # one user has more than PER_PRINCIPAL_LINKS


def _link(number: int, template: str, user: az.EntityUID, target: int) -> az.TemplateLink:
    if template == "any-doc":
        resource = None
    else:
        resource = FOLDERS[target % 4] if template == "folder" else DOCS[target]
    return az.TemplateLink(id=f"l{number}", template=template, principal=user, resource=resource)


@settings(max_examples=120, deadline=None)
@given(links, st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(["read", "write"]),
                                 st.integers(0, 29), st.booleans()), min_size=1, max_size=12))
def test_sliced_decisions_with_many_links_per_principal_equal_the_whole_set(
        chosen: list[tuple[str, az.EntityUID, int]],
        requests: list[tuple[az.EntityUID, str, int, bool]]) -> None:
    store = az.PolicyStore.from_text(TEMPLATES, entities=ENTITIES,
                                     links=[_link(i, *link) for i, link in enumerate(chosen)])
    batch = [az.Request(principal=user, action=az.EntityUID("Action", action), resource=DOCS[doc],
                        context={"stop": True} if stop else {}) for user, action, doc, stop in requests]
    assert az.LocalEngine(store).decide(batch) == az.LocalEngine(store, slicing=False).decide(batch)


def test_a_request_of_a_principal_with_thousands_of_shares_gets_only_its_own_links() -> None:
    shares = [az.TemplateLink(id=f"s{i}", template="exact", principal=USERS[0],
                              resource=az.EntityUID("Doc", f"x{i}")) for i in range(5000)]
    store = az.PolicyStore.from_text(TEMPLATES, links=[*shares, _link(5000, "folder", USERS[0], 0)])
    index = SliceIndex(store.snapshot)
    chosen = index.select(az.Request(principal=USERS[0], action=az.EntityUID("Action", "read"),
                                     resource=az.EntityUID("Doc", "x42")))
    assert chosen.size == 2  # the share of x42, and the folder link (it names no single resource)
