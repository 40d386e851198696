"""agentauthz push / pull against the local Verified Permissions endpoint.

Push twice changes nothing the second time; --dry-run changes nothing; --prune
deletes what the directory does not have; paging is followed; push -> pull ->
load gives the same policies, ids, links, schema and decisions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.cli._main import main
from agentauthz.testing import LocalVerifiedPermissions
from tests.conftest import EXAMPLE_STORE

pytest.importorskip("boto3")

from agentauthz.avp._engine import VerifiedPermissionsEngine

CASES = sorted([*EXAMPLE_STORE.glob("ALLOW/*.json"), *EXAMPLE_STORE.glob("DENY/*.json")])
EXAMPLE = az.PolicyStore.from_directory(EXAMPLE_STORE)
STATICS = sum(1 for p in EXAMPLE.policies if not p.is_template)
TEMPLATES = sum(1 for p in EXAMPLE.policies if p.is_template)
ITEMS = STATICS + TEMPLATES + len(EXAMPLE.links) + 1  # + the schema


@pytest.fixture(scope="module")
def server() -> Iterator[LocalVerifiedPermissions]:
    with LocalVerifiedPermissions() as local:
        yield local


@pytest.fixture
def store_id(server: LocalVerifiedPermissions) -> Iterator[str]:
    created = server.add_store()
    yield created
    server.delete_store(created)


@pytest.fixture
def client(server: LocalVerifiedPermissions) -> Any:
    return server.client()


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_STORE, target)
    return target


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def push(capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str,
         directory: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "push", str(directory), "--policy-store-id", store_id,
                         "--endpoint-url", server.endpoint_url, "--json", *extra)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def ids(result: dict[str, Any], action: str, kind: str | None = None) -> list[str]:
    return sorted(c["id"] for c in result["changes"]
                  if c["action"] == action and (kind is None or c["kind"] == kind))


def remote_state(client: Any, store_id: str) -> tuple[list[Any], list[Any]]:
    policies = client.list_policies(policyStoreId=store_id, maxResults=50)["policies"]
    templates = client.list_policy_templates(policyStoreId=store_id, maxResults=50)["policyTemplates"]
    return policies, templates


# -- push ---------------------------------------------------------------------------------


def test_push_creates_everything_and_a_second_push_changes_nothing(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any
) -> None:
    store = az.PolicyStore.from_directory(EXAMPLE_STORE)
    first = push(capsys, server, store_id, EXAMPLE_STORE)
    statics = sorted(p.id for p in store.policies if not p.is_template)
    assert ids(first, "create", "policy") == statics
    assert ids(first, "create", "template") == ["share"]
    assert ids(first, "create", "link") == sorted(link.id for link in store.links)
    assert ids(first, "create", "schema") == ["schema"]
    assert first["counts"]["create"] == len(statics) + 1 + len(store.links) + 1
    second = push(capsys, server, store_id, EXAMPLE_STORE)
    assert second["counts"] == {"create": 0, "update": 0, "delete": 0,
                                "unchanged": first["counts"]["create"], "extra": 0}
    policies, templates = remote_state(client, store_id)
    assert len(policies) == len(statics) + len(store.links) and len(templates) == 1


def test_text_output_lists_changes_and_counts(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str
) -> None:
    code, out, _ = run(capsys, "push", str(EXAMPLE_STORE), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url)
    assert code == 0
    assert "created       policy    tenant-isolation" in out
    assert "created       template  share" in out
    assert "created       link      share-roadmap-with-bob" in out
    assert "entities in entities.json are not pushed" in out
    assert out.rstrip().splitlines()[-1] == f"{ITEMS} created, 0 updated, 0 deleted, 0 unchanged"
    code, out, _ = run(capsys, "push", str(EXAMPLE_STORE), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url)
    assert out.rstrip().splitlines()[-1] == f"0 created, 0 updated, 0 deleted, {ITEMS} unchanged"


def test_dry_run_changes_nothing(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any
) -> None:
    code, out, _ = run(capsys, "push", str(EXAMPLE_STORE), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url, "--dry-run")
    assert code == 0
    assert "dry run: nothing changed" in out and "would create  policy    tenant-isolation" in out
    assert out.rstrip().splitlines()[-1] == f"{ITEMS} to create, 0 to update, 0 to delete, 0 unchanged"
    assert remote_state(client, store_id) == ([], [])
    with pytest.raises(Exception, match="ResourceNotFound"):
        client.get_schema(policyStoreId=store_id)
    server.reset_calls()
    push(capsys, server, store_id, EXAMPLE_STORE, "--dry-run")
    writes = {"CreatePolicy", "UpdatePolicy", "DeletePolicy", "PutSchema", "CreatePolicyTemplate",
              "UpdatePolicyTemplate", "DeletePolicyTemplate"}
    assert not [call for call in server.calls if call.operation in writes]


def test_prune_deletes_only_when_asked(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    example_copy: Path,
) -> None:
    push(capsys, server, store_id, example_copy)
    (example_copy / "tools.cedar").unlink()
    links = json.loads((example_copy / "template-links.json").read_text())
    (example_copy / "template-links.json").write_text(json.dumps(links[:1]))
    gone = sorted(p.id for p in az.PolicyStore.from_directory(EXAMPLE_STORE).policies
                  if p.source == "tools.cedar")
    kept = push(capsys, server, store_id, example_copy)
    assert ids(kept, "extra", "policy") == gone
    assert ids(kept, "extra", "link") == sorted(link["id"] for link in links[1:])
    assert kept["counts"]["delete"] == 0
    before = len(remote_state(client, store_id)[0])
    pruned = push(capsys, server, store_id, example_copy, "--prune")
    assert ids(pruned, "delete", "policy") == gone
    assert len(remote_state(client, store_id)[0]) == before - len(gone) - 2
    again = push(capsys, server, store_id, example_copy, "--prune")
    assert again["counts"]["delete"] == again["counts"]["create"] == again["counts"]["update"] == 0


def test_prune_also_deletes_policies_agentauthz_did_not_write(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any
) -> None:
    push(capsys, server, store_id, EXAMPLE_STORE)
    created = client.create_policy(policyStoreId=store_id, definition={"static": {
        "statement": 'permit (principal == User::"zed", action == Action::"read", resource);'}})
    kept = push(capsys, server, store_id, EXAMPLE_STORE)
    assert ids(kept, "extra") == [created["policyId"]]
    pruned = push(capsys, server, store_id, EXAMPLE_STORE, "--prune")
    assert ids(pruned, "delete") == [created["policyId"]]


def test_changes_are_updates(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    example_copy: Path,
) -> None:
    push(capsys, server, store_id, example_copy)
    tools = example_copy / "tools.cedar"
    text = tools.read_text()
    # a condition changed (UpdatePolicy) and an effect changed (delete + create)
    tools.write_text(text.replace("context.input.amount <= 500", "context.input.amount <= 50")
                     .replace('@id("email-single-recipient")\nforbid',
                              '@id("email-single-recipient")\npermit'))
    links = json.loads((example_copy / "template-links.json").read_text())
    links[0]["resource"] = {"type": "Document", "id": "acme-handbook"}
    (example_copy / "template-links.json").write_text(json.dumps(links))
    changed = push(capsys, server, store_id, example_copy)
    assert "refund-support-limit" in ids(changed, "update", "policy")
    assert "email-single-recipient" in ids(changed, "update", "policy")
    assert ids(changed, "update", "link") == [links[0]["id"]]
    assert push(capsys, server, store_id, example_copy)["counts"]["update"] == 0
    # the store decides with the new text
    with VerifiedPermissionsEngine(store_id, client=client) as engine:
        local = az.LocalEngine(az.PolicyStore.from_directory(example_copy))
        requests = [az.Request.from_cedar(json.loads(path.read_text())) for path in CASES]
        entities = az.PolicyStore.from_directory(example_copy).entities
        got = engine.decide(requests, entities)
        want = local.decide(requests)
    assert [(d.allowed, d.reasons) for d in got] == [(d.allowed, d.reasons) for d in want]


def test_template_statement_change_keeps_its_links(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    example_copy: Path,
) -> None:
    push(capsys, server, store_id, example_copy)
    sharing = example_copy / "sharing.cedar"
    sharing.write_text(sharing.read_text().replace('action in [Action::"read", Action::"read_document"]',
                                                   'action == Action::"read"'))
    changed = push(capsys, server, store_id, example_copy)
    assert ids(changed, "update", "template") == ["share"]
    again = push(capsys, server, store_id, example_copy)
    assert again["counts"]["update"] == again["counts"]["create"] == 0
    linked = client.list_policies(policyStoreId=store_id, maxResults=50,
                                  filter={"policyType": "TEMPLATE_LINKED"})["policies"]
    assert len(linked) == 3


def test_push_follows_list_paging(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, tmp_path: Path
) -> None:
    directory = tmp_path / "many"
    directory.mkdir()
    (directory / "many.cedar").write_text("\n".join(
        f'@id("p{i:03}")\npermit (principal == User::"u{i}", action == Action::"read", resource);'
        for i in range(120)))
    (directory / "templates.cedar").write_text("\n".join(
        f'@id("t{i:02}")\npermit (principal == ?principal, action == Action::"t{i}", resource);'
        for i in range(55)))
    first = push(capsys, server, store_id, directory)
    assert first["counts"]["create"] == 175
    server.reset_calls()
    second = push(capsys, server, store_id, directory)
    assert second["counts"] == {"create": 0, "update": 0, "delete": 0, "unchanged": 175, "extra": 0}
    pages = [c.body for c in server.calls if c.operation in ("ListPolicies", "ListPolicyTemplates")]
    assert sum(1 for body in pages if "nextToken" in body) >= 3


# -- pull ---------------------------------------------------------------------------------


def test_push_pull_load_round_trip(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    tmp_path: Path,
) -> None:
    push(capsys, server, store_id, EXAMPLE_STORE)
    out = tmp_path / "pulled"
    code, text, err = run(capsys, "pull", str(out), "--policy-store-id", store_id,
                          "--endpoint-url", server.endpoint_url)
    assert code == 0, err
    assert text.strip() == (f"wrote {out}: {STATICS} policies, {TEMPLATES} templates, "
                            f"{len(EXAMPLE.links)} links, schema")
    assert sorted(p.name for p in out.iterdir()) == [
        "policies.cedar", "schema.cedarschema.json", "template-links.json", "templates.cedar"]
    original = az.PolicyStore.from_directory(EXAMPLE_STORE)
    pulled = az.PolicyStore.from_directory(out)
    assert {p.id: p.text for p in pulled.policies} == {p.id: p.text for p in original.policies}
    assert {p.id: p.is_template for p in pulled.policies} == {p.id: p.is_template for p in original.policies}
    assert set(pulled.links) == set(original.links)
    import cedarpy

    assert str(cedarpy.Schema.from_json_str(pulled.schema_text)) == str(
        cedarpy.Schema.from_str(original.schema_text))
    requests = [az.Request.from_cedar(json.loads(path.read_text())) for path in CASES]
    want = az.LocalEngine(original).decide(requests)
    got = az.LocalEngine(pulled).decide(requests, original.entities)
    assert [(d.allowed, d.reasons) for d in got] == [(d.allowed, d.reasons) for d in want]
    # the fingerprint of what AVP keeps (policies, links) is the same
    from agentauthz.policy._store import _fingerprint

    assert _fingerprint(pulled.policies, pulled.links, (), None) == _fingerprint(
        original.policies, original.links, (), None)
    # pushing the pulled directory back changes nothing
    again = push(capsys, server, store_id, out)
    assert again["counts"]["create"] == again["counts"]["update"] == again["counts"]["delete"] == 0


def test_pull_names_policies_agentauthz_did_not_write(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    tmp_path: Path,
) -> None:
    created = client.create_policy(policyStoreId=store_id, definition={"static": {
        "statement": 'permit (principal == User::"zed", action == Action::"read", resource);'}})
    out = tmp_path / "pulled"
    code, _, err = run(capsys, "pull", str(out), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url)
    assert code == 0, err
    [policy] = az.PolicyStore.from_directory(out).policies
    assert policy.id == created["policyId"]
    assert policy.text.startswith(f'@id("{created["policyId"]}")')


def test_pulled_links_name_a_template_by_the_id_it_loads_under(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, client: Any,
    tmp_path: Path,
) -> None:
    # A template created in AVP with an @id of its own loads under that @id: its links must name it so.
    template = client.create_policy_template(policyStoreId=store_id, statement=(
        '@id("own") permit (principal == ?principal, action == Action::"read", resource == ?resource);'))
    client.create_policy(policyStoreId=store_id, definition={"templateLinked": {
        "policyTemplateId": template["policyTemplateId"],
        "principal": {"entityType": "User", "entityId": "zed"},
        "resource": {"entityType": "Document", "entityId": "d"}}})
    out = tmp_path / "pulled"
    code, _, err = run(capsys, "pull", str(out), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url)
    assert code == 0, err
    [link] = az.PolicyStore.from_directory(out, validate=False).links
    assert link.template == "own"


def test_pull_refuses_a_directory_with_files(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str, tmp_path: Path
) -> None:
    (tmp_path / "keep.cedar").write_text("// mine")
    code, _, err = run(capsys, "pull", str(tmp_path), "--policy-store-id", store_id,
                       "--endpoint-url", server.endpoint_url)
    assert code == 2 and "not an empty directory" in err
    assert (tmp_path / "keep.cedar").read_text() == "// mine"


# -- errors -------------------------------------------------------------------------------


def test_errors_and_exit_codes(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = run(capsys, "push", str(tmp_path / "missing"), "--policy-store-id", "PS1",
                       "--endpoint-url", server.endpoint_url)
    assert code == 2 and "no such directory" in err
    code, _, err = run(capsys, "push", str(EXAMPLE_STORE), "--policy-store-id", "PSnotthere",
                       "--endpoint-url", server.endpoint_url)
    assert code == 1 and "ResourceNotFoundException" in err
    code, _, err = run(capsys, "push", str(EXAMPLE_STORE))
    assert code == 2 and "--policy-store-id" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.cedar").write_text("permit (principal, action, resource) when { ;")
    code, _, err = run(capsys, "push", str(broken), "--policy-store-id", "PS1",
                       "--endpoint-url", server.endpoint_url)
    assert code == 1 and "bad.cedar" in err
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    code, _, err = run(capsys, "pull", str(tmp_path / "out"), "--policy-store-id", "PS1")
    assert code == 2 and "--region" in err


def test_push_leaves_shadow_policies_out_because_avp_would_enforce_them(
    capsys: pytest.CaptureFixture[str], server: LocalVerifiedPermissions, store_id: str,
    example_copy: Path, client: Any,
) -> None:
    (example_copy / "zz_shadow.cedar").write_text(
        '@id("shadow-no-search")\n@mode("shadow")\n'
        'forbid(principal, action == Action::"search_documents", resource);\n'
    )
    result = push(capsys, server, store_id, example_copy)
    assert "shadow-no-search" not in ids(result, "create")
    policies, _ = remote_state(client, store_id)
    assert not any("shadow-no-search" in (p.get("name") or "") for p in policies)
    engine = VerifiedPermissionsEngine(store_id, client=client)
    decision = az.Authorizer(engine, entities=EXAMPLE.entities).authorize(
        principal=az.EntityUID("User", "alice"), action="search_documents",
        resource=az.EntityUID("Tool", "search_documents"), context={"input": {"query": "q"}},
    )
    assert decision.allowed


def test_local_endpoint_seeds_only_enforced_policies(example_copy: Path) -> None:
    (example_copy / "zz_shadow.cedar").write_text(
        '@id("shadow-no-search")\n@mode("shadow")\n'
        'forbid(principal, action == Action::"search_documents", resource);\n'
    )
    store = az.PolicyStore.from_directory(example_copy)
    with LocalVerifiedPermissions(store) as local:
        assert "shadow-no-search" not in local.policy_ids()
