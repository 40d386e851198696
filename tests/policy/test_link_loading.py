"""Loading many template links (issue 18, row 4): the slot check and the fingerprint, written for speed.

The fingerprint of a link is the text ``json.dumps`` gives (a store's version
must not change with the release that loads it faster); a link filling the
wrong slots is still a load error.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.policy._store import _link_json

ids = st.text(min_size=1, max_size=12)
uids = st.one_of(st.none(), st.builds(az.EntityUID, st.sampled_from(["User", "A::B"]), ids))


@settings(max_examples=200, deadline=None)
@given(ids, ids, uids, uids)
def test_a_links_fingerprint_text_is_what_json_dumps_writes(link_id: str, template: str,
                                                            principal: az.EntityUID | None,
                                                            resource: az.EntityUID | None) -> None:
    link = az.TemplateLink(id=link_id, template=template, principal=principal, resource=resource)
    assert _link_json(link) == json.dumps([link_id, template, principal.to_cedar() if principal else None,
                                           resource.to_cedar() if resource else None])


@pytest.mark.parametrize(("principal", "resource", "message"), [
    (None, az.EntityUID("Doc", "d"), "takes ?principal, ?resource; the link fills ?resource"),
    (az.EntityUID("User", "u"), None, "takes ?principal, ?resource; the link fills ?principal"),
])
def test_a_link_filling_the_wrong_slots_is_a_load_error(principal: az.EntityUID | None,
                                                        resource: az.EntityUID | None, message: str) -> None:
    template = '@id("share") permit(principal == ?principal, action, resource == ?resource);'
    link = az.TemplateLink(id="l1", template="share", principal=principal, resource=resource)
    with pytest.raises(az.PolicyError, match=re.escape(message)):
        az.PolicyStore.from_text(template, links=[link])
