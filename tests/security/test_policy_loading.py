"""Attack class: policy loading. Hostile or broken policy stores are refused before cedarpy sees them.

cedarpy crashes the interpreter (SIGSEGV) on bracket nesting past 650-700 levels,
so every risky load runs in a child process: a crash there fails the test
instead of killing pytest. The loader must refuse over-deep nesting (brackets of
every kind and ``if-then-else`` chains, in policies and in schemas), files over
the size limit (including files whose size the file system does not tell:
devices and pipes), invalid UTF-8 and duplicate ids with a PolicyError, and a
policy that errors at evaluation must surface its error and never turn it into
an allow of its own.

Cases tried:

* over-deep nesting, 7 constructs x 5 depths (201 to 50,000 levels) x 2 loaders
  (text and directory), in a child process per construct: 70 loads; depth split by
  ``;`` inside one statement: 1; the limit itself (200 loads, 201 does not): 7
* over-deep schemas (Cedar text, JSON text, a JSON document given as a dict): 5
* ``has`` attribute paths (Cedar desugars them quadratically): 1
* size: each file kind over the limit: 5; a sparse 4 GiB file: 1; a symlink to
  /dev/zero and a named pipe among the policies: 2
* invalid UTF-8 in each file kind and encoding trick: 8
* duplicate ids (annotations, positional names, links, across files): 6
* policies that error at evaluation: 9 (permits deny with the error; a forbid that
  errors is skipped, as Cedar specifies, which a schema catches at load: 2 of them)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.policy._text import DEFAULT_MAX_DEPTH
from tests.security.support import run_isolated

U = az.EntityUID
PERMIT = "permit(principal, action, resource)"

#: Nesting constructs: (open, inner, close) so that open*n + inner + close*n is a valid condition.
CONSTRUCTS: dict[str, tuple[str, str, str]] = {
    "parentheses": ("(", "true", ")"),
    "sets": ("[", "", "]"),
    "records": ("{a: ", "1", "}"),
    "negated-parentheses": ("!(", "false", ")"),
    "if-then-else": ("if true then ", "true", " else false"),
    "else-if-chain": ("if false then false else ", "true", ""),
    "mixed": ("[{a: (", "1", ")}]"),
}
DEPTHS = (DEFAULT_MAX_DEPTH + 1, 650, 700, 5_000, 50_000)

# Runs in the child: builds each text there (the texts reach megabytes) and loads it both ways.
_LOADER = """
import json, pathlib, tempfile
import agentauthz as az
from tests.security.test_policy_loading import PERMIT, condition
results = []
for depth in {depths!r}:
    text = PERMIT + " when {{ " + condition({construct!r}, depth) + " }};"
    for loader in ("text", "directory"):
        try:
            if loader == "text":
                az.PolicyStore.from_text(text, max_bytes=10**8)
            else:
                root = pathlib.Path(tempfile.mkdtemp())
                (root / "deep.cedar").write_text(text, encoding="utf-8")
                az.PolicyStore.from_directory(root, max_bytes=10**8)
            results.append([depth, loader, "loaded", ""])
        except az.PolicyError as exc:
            results.append([depth, loader, "PolicyError", str(exc)[:200]])
print(json.dumps(results))
"""


def condition(construct: str, depth: int) -> str:
    """A condition nesting ``construct`` ``depth`` levels deep."""
    opening, inner, closing = CONSTRUCTS[construct]
    body = opening * depth + inner + closing * depth
    if construct == "sets":
        body += " == []"
    elif construct in ("records", "mixed"):
        body += " == {}" if construct == "records" else " == []"
    return body


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_over_deep_nesting_is_refused_before_cedarpy_sees_it(construct: str) -> None:
    outcome = run_isolated(_LOADER.format(depths=DEPTHS, construct=construct), timeout=60)
    assert not outcome.crashed, f"the interpreter died: {outcome.returncode} {outcome.stderr[-300:]}"
    assert outcome.returncode == 0, outcome.stderr[-500:]
    results = json.loads(outcome.stdout)
    assert len(results) == 2 * len(DEPTHS)
    for depth, loader, verdict, message in results:
        assert verdict == "PolicyError", (depth, loader)
        assert f"nested deeper than {DEFAULT_MAX_DEPTH} levels" in message, (depth, loader, message)


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_nesting_up_to_the_limit_loads(construct: str) -> None:
    # `{` of `when {` is one level: the condition may nest one level less than the limit.
    depth = DEFAULT_MAX_DEPTH - 2 if construct == "mixed" else DEFAULT_MAX_DEPTH - 1
    if construct == "mixed":
        depth //= 3
    store = az.PolicyStore.from_text(f"{PERMIT} when {{ {condition(construct, depth)} }};")
    assert len(store.policies) == 1


def test_nesting_split_by_semicolons_inside_one_statement_is_refused_without_a_crash() -> None:
    """The scan measures depth per statement; a `;` inside brackets must not let depth accumulate."""
    text = f"{PERMIT} when {{ " + ("(" * (DEFAULT_MAX_DEPTH - 1) + ";") * 300 + " true };"
    outcome = run_isolated(f"""
        import agentauthz as az
        try:
            az.PolicyStore.from_text({text!r}, max_bytes=10**8)
            print("loaded")
        except az.PolicyError:
            print("PolicyError")
    """, timeout=60)
    assert not outcome.crashed, outcome.stderr[-300:]
    assert outcome.stdout.strip() == "PolicyError"


SCHEMA_CASES = {
    "cedar-records": "entity User = " + "{a: " * 5_000 + "Long" + "}" * 5_000 + ";",
    "cedar-sets": "entity User = {a: " + "Set<" * 5_000 + "Long" + ">" * 5_000 + "};",
    "json-text": json.dumps({"": {"entityTypes": {"User": {"shape": {"type": "Record", "attributes": {
        "a": {"type": "Long"}}}}}, "actions": {}}}).replace(
        '{"type": "Long"}', '{"type": "Set", "element": ' * 5_000 + '{"type": "Long"}' + "}" * 5_000),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_over_deep_schemas_are_refused_without_a_crash(case: str, tmp_path: Path) -> None:
    schema = SCHEMA_CASES[case]
    name = "schema.cedarschema.json" if case.startswith("json") else "schema.cedarschema"
    (tmp_path / name).write_text(schema, encoding="utf-8")
    (tmp_path / "p.cedar").write_text(f"{PERMIT};", encoding="utf-8")
    outcome = run_isolated(f"""
        import agentauthz as az
        for load in (lambda: az.PolicyStore.from_text("{PERMIT};", schema={schema!r}),
                     lambda: az.PolicyStore.from_directory({str(tmp_path)!r})):
            try:
                load()
                print("loaded")
            except az.PolicyError:
                print("PolicyError")
    """, timeout=60)
    assert not outcome.crashed, outcome.stderr[-300:]
    assert outcome.stdout.split() == ["PolicyError", "PolicyError"], outcome.stderr[-500:]


def _deep_document(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["x"] = {}
        node = node["x"]
    return root


@pytest.mark.parametrize("depth", [150, 20_000])
def test_a_schema_document_nested_too_deeply_is_a_policy_error(depth: int) -> None:
    with pytest.raises(az.PolicyError):
        az.PolicyStore.from_text(f"{PERMIT};", schema=_deep_document(depth))


def test_a_long_has_attribute_path_loads_or_is_refused_in_bounded_time() -> None:
    """`e has a.b.c` is desugared into one test per prefix: Cedar's parse cost grows with the square."""
    text = f"{PERMIT} when {{ context has a" + ".a" * 120_000 + " };"
    code = f"""
        import agentauthz as az
        try:
            az.PolicyStore.from_text("{text}")
            print("loaded")
        except az.PolicyError as exc:
            print("PolicyError", exc)
    """
    started = time.perf_counter()
    try:
        outcome = run_isolated(code, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("a 240 KB `has` path kept the loader busy for more than 10 s")
    assert outcome.stdout.startswith("PolicyError"), outcome.stderr[-300:]
    assert time.perf_counter() - started < 10


# -- size ---------------------------------------------------------------------------------------


def _store(root: Path, **files: str | bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files.setdefault("p.cedar", f"{PERMIT};")
    for name, content in files.items():
        path = root / name.replace("__", ".")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.mark.parametrize("name", ["big.cedar", "schema.cedarschema", "entities.json", "template-links.json",
                                  "linked"])
def test_each_file_over_the_size_limit_is_refused(name: str, tmp_path: Path) -> None:
    padding = " " * 2_000
    content = {
        "big.cedar": f"{PERMIT};" + f"// {padding}\n" * 10,
        "schema.cedarschema": "entity User;" + f"// {padding}\n" * 10,
        "entities.json": "[" + padding * 10 + "]",
        "template-links.json": "[" + padding * 10 + "]",
        "linked": "[" + padding * 10 + "]",
    }[name]
    root = _store(tmp_path / "store")
    (root / name).write_text(content, encoding="utf-8")
    with pytest.raises(az.PolicyError, match="over the limit"):
        az.PolicyStore.from_directory(root, max_bytes=10_000, max_data_bytes=10_000)


@pytest.mark.parametrize("name", ["entities.json", "template-links.json", "linked"])
def test_a_data_file_is_bounded_by_the_data_limit_not_the_policy_limit(name: str, tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    (root / name).write_text("[" + " " * 20_000 + "]", encoding="utf-8")
    assert az.PolicyStore.from_directory(root, max_bytes=10_000).policies
    with pytest.raises(az.PolicyError, match=f"{name}: .*over the limit of 10000"):
        az.PolicyStore.from_directory(root, max_data_bytes=10_000)


@pytest.mark.parametrize("name", ["big.cedar", "schema.cedarschema"])
def test_policy_text_keeps_its_own_limit_whatever_the_data_limit(name: str, tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    text = f"{PERMIT};" if name == "big.cedar" else "entity User;"
    (root / name).write_text(text + "// " + " " * 20_000 + "\n", encoding="utf-8")
    with pytest.raises(az.PolicyError, match=f"{name}: .*over the limit of 10000"):
        az.PolicyStore.from_directory(root, max_bytes=10_000, max_data_bytes=10**9)


def test_a_sparse_four_gigabyte_policy_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    with (root / "huge.cedar").open("wb") as handle:
        handle.truncate(4 * 1024**3)
    started = time.perf_counter()
    with pytest.raises(az.PolicyError, match="over the limit"):
        az.PolicyStore.from_directory(root)
    assert time.perf_counter() - started < 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes and /dev/zero")
@pytest.mark.parametrize("special", ["dev-zero-symlink", "named-pipe"])
def test_a_device_or_pipe_among_the_policies_is_refused_not_read_forever(special: str,
                                                                        tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    if special == "dev-zero-symlink":
        (root / "zero.cedar").symlink_to("/dev/zero")
    else:
        os.mkfifo(root / "pipe.cedar")
    code = f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
        import agentauthz as az
        try:
            az.PolicyStore.from_directory({str(root)!r})
            print("loaded")
        except az.PolicyError as exc:
            print("PolicyError", exc)
    """
    try:
        outcome = run_isolated(code, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading a store with a {special} blocked for more than 10 s")
    assert outcome.stdout.startswith("PolicyError"), (outcome.stdout, outcome.stderr[-300:])


# -- encodings ----------------------------------------------------------------------------------

BAD_BYTES = {
    "latin-1": "permit(principal, action, resource) when { context.s == \"caf\xe9\" };".encode("latin-1"),
    "overlong-slash": b"permit(principal, action, resource);\n// \xc0\xaf\n",
    "encoded-surrogate": b"permit(principal, action, resource);\n// \xed\xa0\x80\n",
    "truncated-sequence": b"permit(principal, action, resource);\n// \xe2\x82",
    "utf-16": "permit(principal, action, resource);".encode("utf-16"),
}


@pytest.mark.parametrize("case", sorted(BAD_BYTES))
def test_policy_files_that_are_not_utf8_are_refused(case: str, tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    (root / "bad.cedar").write_bytes(BAD_BYTES[case])
    with pytest.raises(az.PolicyError, match=r"bad\.cedar"):
        az.PolicyStore.from_directory(root)


@pytest.mark.parametrize("name", ["schema.cedarschema", "entities.json", "template-links.json"])
def test_other_store_files_that_are_not_utf8_are_refused(name: str, tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    (root / name).write_bytes(b"[\xff\xfe]")
    with pytest.raises(az.PolicyError, match=name.replace(".", r"\.")):
        az.PolicyStore.from_directory(root)


# -- duplicate ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f'@id("a") {PERMIT}; @id("a") forbid(principal, action, resource);',
    f'@id("a") @id("b") {PERMIT};',
    f'{PERMIT}; @id("policy0") forbid(principal, action, resource);',
    f'@id("") {PERMIT}; @id("") forbid(principal, action, resource);',
])
def test_duplicate_ids_in_text_are_refused(text: str) -> None:
    with pytest.raises(az.PolicyError):
        az.PolicyStore.from_text(text)


def test_an_id_equal_to_another_files_positional_name_is_refused(tmp_path: Path) -> None:
    root = _store(tmp_path / "store", **{"a__cedar": f"{PERMIT};",
                                         "b__cedar": '@id("a.cedar:0") forbid(principal, action, resource);'})
    with pytest.raises(az.PolicyError, match="duplicate policy id"):
        az.PolicyStore.from_directory(root)


def test_two_links_with_one_id_are_refused() -> None:
    links = [az.TemplateLink(id="l", template="t", principal=U("User", name)) for name in ("a", "b")]
    with pytest.raises(az.PolicyError):
        az.PolicyStore.from_text('@id("t") permit(principal == ?principal, action, resource);', links=links)


# -- policies that error at evaluation ------------------------------------------------------------

ERRORING_PERMITS = {
    "missing-attribute": "resource.owner == principal",
    "type-error": 'principal.name + 1 > 0',
    "overflow": "context.n + 9223372036854775807 > 0",
    "bad-decimal": 'decimal(context.s) > decimal("1.0")',
    "bad-ip": "ip(context.s).isIpv4()",
    "missing-entity": 'resource.parent.owner == principal',
    "recursion-limit": " + ".join(["context.n"] * 20_000) + " > 0",
}


@pytest.mark.parametrize("case", sorted(ERRORING_PERMITS))
def test_a_permit_that_errors_denies_and_its_error_surfaces(case: str) -> None:
    text = f'@id("{case}") {PERMIT} when {{ {ERRORING_PERMITS[case]} }};'
    authz = az.Authorizer(az.LocalEngine(az.PolicyStore.from_text(text, max_bytes=10**7)), audit=[])
    from agentauthz.testing import capture_decisions

    principal = az.Entity(uid=U("User", "alice"), attrs={"name": "alice"})
    resource = az.Entity(uid=U("Doc", "d"), attrs={"parent": U("Folder", "nowhere")})
    with capture_decisions() as events:
        decision = authz.authorize(principal=principal, action="read", resource=resource,
                                   context={"n": 5, "s": "not-a-number"})
    assert not decision.allowed
    assert decision.errors and case in decision.errors[0]
    assert events[0].decision == "deny" and events[0].errors == decision.errors


def test_a_forbid_that_errors_denies_by_default_and_its_error_surfaces() -> None:
    """Cedar ignores a policy whose condition errors, forbids included: the permit would stand.

    The Authorizer denies such an allow by default (``policy_errors="deny"``);
    the error is in ``Decision.errors`` and the audit event, and a schema
    refuses such a policy at load (next test). Write ``resource has secret &&
    resource.secret`` in forbids over optional attributes.
    """
    text = ('@id("all") permit(principal, action, resource);\n'
            '@id("no-secrets") forbid(principal, action, resource) when { resource.secret };')
    authz = az.Authorizer.from_text(text, audit=[])
    decision = authz.authorize(principal=U("User", "alice"), action="read",
                               resource=az.Entity(uid=U("Doc", "d")))
    assert not decision.allowed
    assert decision.errors and "no-secrets" in decision.errors[0]


def test_with_skip_a_forbid_that_errors_is_skipped_as_cedar_specifies() -> None:
    text = ('@id("all") permit(principal, action, resource);\n'
            '@id("no-secrets") forbid(principal, action, resource) when { resource.secret };')
    authz = az.Authorizer.from_text(text, audit=[], policy_errors="skip")
    decision = authz.authorize(principal=U("User", "alice"), action="read",
                               resource=az.Entity(uid=U("Doc", "d")))
    assert decision.allowed
    assert decision.reasons == ("all",)
    assert decision.errors and "no-secrets" in decision.errors[0]


def test_a_schema_refuses_the_erroring_forbid_at_load() -> None:
    schema = ("entity User; entity Doc = { secret?: Bool };\n"
              "action read appliesTo { principal: User, resource: Doc };")
    text = ('@id("all") permit(principal, action, resource);\n'
            '@id("no-secrets") forbid(principal, action, resource) when { resource.secret };')
    with pytest.raises(az.PolicyError, match="no-secrets"):
        az.PolicyStore.from_text(text, schema=schema)


def test_a_store_with_10000_template_links_and_their_entities_loads_with_the_default_limits(
        tmp_path: Path) -> None:
    links = [{"id": f"share-{i}", "template": "share", "principal": {"type": "User", "id": f"user-{i}"},
              "resource": {"type": "Doc", "id": f"document-{i}"}} for i in range(10_000)]
    entities = [{"uid": {"type": "User", "id": f"user-{i}"}, "attrs": {"note": "x" * 100}, "parents": []}
                for i in range(10_000)]
    root = _store(tmp_path / "store", **{
        "share.cedar": '@id("share") permit(principal == ?principal, action, resource == ?resource);',
        "template-links__json": json.dumps(links), "entities__json": json.dumps(entities)})
    assert (root / "template-links.json").stat().st_size > 1024 * 1024
    assert (root / "entities.json").stat().st_size > 1024 * 1024
    store = az.PolicyStore.from_directory(root)
    assert len(store.entities) == 10_000
    assert len(store.links) == 10_000
