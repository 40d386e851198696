"""Errors for policy authors (issue 19): whole messages, the expression at fault, the same line:col.

The boundary: loading and validating the author's own files (``PolicyStore``,
``validate_tools``, ``agentauthz validate|test|check``) shows Cedar's message
whole, values included, with the entity uid and the expression at fault;
what is decided at run time (``Decision.errors``, audit events) stays redacted.
"""

from __future__ import annotations

import json
from pathlib import Path

import cedarpy
import pytest
from hypothesis import given, settings

import agentauthz as az
from agentauthz.policy._messages import AUTHOR_MESSAGE_LIMIT
from agentauthz.policy._type_errors import explain_type_error, expression_text
from agentauthz.testing import capture_decisions
from agentauthz.tools._schema import validate_policies_for_tools
from tests.policy_stores import BROKEN, EXAMPLE_STORE, broken_store, good_store, run
from tests.strategies import cedar_expressions

SCHEMA = """
entity User = { dept: String, seats: Long };
entity Doc = { owner: User };
action book appliesTo { principal: User, resource: Doc, context: { seats: Long } };
"""
SECRET = "s3cr3t-value-of-the-author"


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def load_problems(root: Path) -> tuple[str, ...]:
    with pytest.raises(az.PolicyError) as raised:
        az.PolicyStore.from_directory(root)
    return raised.value.problems


# -- the expression at fault -------------------------------------------------------------------


def test_a_type_error_names_the_expression_and_the_types_of_its_operands(tmp_path: Path) -> None:
    root = write(tmp_path, {"schema.cedarschema": SCHEMA, "p.cedar": (
        '// seats are counted\n@id("book")\npermit (principal, action == Action::"book", resource)\n'
        'when { context.seats == "three" };\n')})

    assert load_problems(root) == (
        'p.cedar:4:8: [book] the types Long and String are not compatible: `context.seats == "three"`: '
        '`context.seats` is Long, `"three"` is String',)


def test_an_operand_of_the_wrong_type_is_named_with_the_type_expected(tmp_path: Path) -> None:
    root = write(tmp_path, {"schema.cedarschema": SCHEMA, "p.cedar": (
        '@id("few") permit (principal, action == Action::"book", resource)\n'
        'when { context.seats > 0 && principal.dept < 3 };\n')})

    assert load_problems(root) == (
        "p.cedar:2:29: [few] unexpected type: expected Long but saw String: `principal.dept < 3`: "
        "`principal.dept` is String, expected Long",)


def test_two_type_errors_with_one_message_are_each_at_their_own_expression(tmp_path: Path) -> None:
    root = write(tmp_path, {"schema.cedarschema": SCHEMA, "p.cedar": (
        '@id("both") permit (principal, action == Action::"book", resource)\n'
        'when { context.seats == "three" && principal.dept == 3 };\n')})

    problems = load_problems(root)

    assert [problem.split(": [both] ")[0] for problem in problems] == ["p.cedar:2:8", "p.cedar:2:36"]
    assert "`context.seats == \"three\"`" in problems[0] and "`principal.dept == 3`" in problems[1]


def test_a_type_error_in_a_template_is_explained_in_the_template_scope(tmp_path: Path) -> None:
    root = write(tmp_path, {"schema.cedarschema": SCHEMA, "p.cedar": (
        '@id("t") permit (principal == ?principal, action == Action::"book", resource)\n'
        "when { resource.owner.seats == true };\n")})

    (problem,) = load_problems(root)

    assert problem.startswith("p.cedar:2:8: [t] the types ")
    assert problem.endswith("`resource.owner.seats` is Long, `true` is Bool")


def test_other_validation_errors_keep_cedars_message_alone() -> None:
    schema = cedarpy.Schema.from_str(SCHEMA)
    statement = 'permit (principal, action == Action::"book", resource) when { context.seatz == 1 };'
    message = 'attribute `seatz` in context for Action::"book" not found'
    assert explain_type_error(statement, message, schema) is None


def test_an_explanation_that_cannot_be_found_leaves_the_message_as_cedar_wrote_it() -> None:
    schema = cedarpy.Schema.from_str(SCHEMA)
    statement = 'permit (principal, action == Action::"book", resource) when { context.seats == 1 };'
    assert explain_type_error(statement, "the types Long and String are not compatible", schema) is None
    assert explain_type_error("not cedar at all", "the types Long and String are not compatible",
                              schema) is None


def test_the_cli_locates_type_errors_of_the_broken_stores_where_the_store_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    type_error = next(broken for broken in BROKEN if broken.kind == "type-error")
    root = broken_store(tmp_path / "store", type_error)

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    assert f"{root.as_posix()}/broken.cedar:{type_error.line}:{type_error.col}: error: " in out


# -- the same line:col in PolicyError.problems as the command line prints ------------------------


@pytest.mark.parametrize("broken", BROKEN, ids=[broken.kind for broken in BROKEN])
def test_load_problems_carry_the_line_and_column_the_cli_prints(
        broken: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = broken_store(tmp_path / "store", broken)  # type: ignore[arg-type]
    problems = load_problems(root)

    code, out, _ = run(capsys, "validate", str(root))

    printed = [line.replace(": error: ", ": ", 1) for line in out.splitlines() if ": error: " in line]
    assert code == 1
    assert printed == [f"{root.as_posix()}/{problem}" for problem in problems]


def test_problems_of_every_file_kind_carry_their_position(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "schema.cedarschema": SCHEMA,
        "p.cedar": '@id("ok") permit (principal, action == Action::"book", resource);\n',
        "entities.json": json.dumps([
            {"uid": {"type": "User", "id": "alice"}, "attrs": {"dept": "hr", "seats": 1}, "parents": []},
            {"uid": {"type": "User", "id": "bob"}, "attrs": {"dept": "it", "seats": SECRET}, "parents": []},
        ], indent=1),
    })

    (problem,) = load_problems(root)

    assert problem.startswith('entities.json:13:2: entity does not conform to the schema (first '
                              'nonconforming entity: #1 User::"bob": in attribute `seats` on `User::"bob"`')


def test_validate_tools_reports_the_same_line_and_column_as_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = good_store(tmp_path / "store")
    (root / "typo.cedar").write_text(
        '\n@id("typo")\npermit (principal, action == Action::"read", resource)\n'
        "when { resource.dept == principal.dpt };\n", encoding="utf-8")
    store = az.PolicyStore.from_directory(root, validate=False)
    code, out, _ = run(capsys, "validate", str(root))

    with pytest.raises(az.PolicyError) as raised:
        validate_policies_for_tools(store, [], (root / "schema.cedarschema").read_text(),
                                    principal_types=["User"])

    printed = {line.split(": error: ")[0].removeprefix(root.as_posix() + "/")
               for line in out.splitlines() if ": error: " in line}
    assert code == 1
    assert printed == {"typo.cedar:4:35"}
    assert [problem for problem in raised.value.problems if problem.startswith("typo.cedar:4:35: [typo] ")]


# -- whole messages: the author's values are shown -------------------------------------------


def test_a_nonconforming_entity_is_shown_with_its_uid_attribute_types_and_value(tmp_path: Path) -> None:
    long_id = "member-" + "x" * 400
    root = write(tmp_path, {
        "schema.cedarschema": SCHEMA,
        "p.cedar": '@id("ok") permit (principal, action == Action::"book", resource);\n',
        "entities.json": json.dumps([{"uid": {"type": "User", "id": long_id},
                                      "attrs": {"dept": "hr", "seats": SECRET}, "parents": []}]),
    })

    (problem,) = load_problems(root)

    assert f'#0 User::"{long_id}": in attribute `seats`' in problem  # the whole uid, never cut at 120
    assert "expected to have type long, but it actually has type string" in problem
    assert SECRET in problem  # the author's own file: the value at fault is shown
    assert len(problem) > 300  # no longer cut at the bound of a decision's error


def test_a_duplicated_entity_uid_is_named_with_both_positions(tmp_path: Path) -> None:
    alice = {"uid": {"type": "User", "id": "alice"}, "attrs": {"dept": "hr", "seats": 1}, "parents": []}
    root = write(tmp_path, {"p.cedar": "permit (principal, action, resource);\n",
                            "entities.json": json.dumps([alice, {**alice, "attrs": {}}])})

    assert load_problems(root) == ('entities.json:1:96: entity #1 User::"alice": the same entity uid '
                                   "appears more than once (first as #0)",)


def test_an_author_message_is_bounded_only_past_any_real_one() -> None:
    from agentauthz.policy._messages import author_message

    real = "in attribute `seats` on `User::\"a\"`: " + "y" * 1500
    assert author_message(real) == real
    assert len(author_message("z" * 10 * AUTHOR_MESSAGE_LIMIT)) == AUTHOR_MESSAGE_LIMIT


def test_check_shows_the_case_entities_problem_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path / "store", {"schema.cedarschema": SCHEMA,
                                      "p.cedar": 'permit (principal, action == Action::"book", resource);\n'})
    entities = tmp_path / "entities.json"
    entities.write_text(json.dumps([{"uid": {"type": "User", "id": "carol"},
                                     "attrs": {"dept": "hr", "seats": SECRET}, "parents": []}]))

    code, out, _ = run(capsys, "check", str(root), "--principal", 'User::"carol"', "--action", "book",
                       "--resource", 'Doc::"d"', "--context", '{"seats": 2}', "--entities", str(entities))

    invalid = next(line for line in out.splitlines() if line.startswith("invalid request:"))
    assert code == 1
    assert 'User::"carol": in attribute `seats`' in invalid and SECRET in invalid
    # What the engine decided is a runtime decision: its errors stay redacted.
    assert all(SECRET not in line for line in out.splitlines() if line.startswith("  "))


# -- the other side: runtime decisions stay redacted --------------------------------------------


def test_a_decision_over_a_nonconforming_entity_keeps_the_value_out_of_errors_and_audit() -> None:
    authz = az.Authorizer.from_text('permit (principal, action == Action::"book", resource);', schema=SCHEMA)
    carol = az.Entity(uid=az.EntityUID("User", "carol"), attrs={"dept": "hr", "seats": SECRET})
    with capture_decisions() as events, authz.acting_as(carol):
        decision = authz.authorize(action="book", resource=az.EntityUID("Doc", "d"),
                                   context={"seats": 2}, entities=[carol])

    assert not decision.allowed and decision.errors
    assert all(SECRET not in error for error in decision.errors)
    assert all(SECRET not in json.dumps(event.to_json()) for event in events)


def test_a_decision_with_a_type_error_at_run_time_keeps_the_value_out_of_its_errors() -> None:
    authz = az.Authorizer.from_text(
        'permit (principal, action, resource) when { context.seats + 1 > 2 };')
    with capture_decisions() as events, authz.acting_as(az.EntityUID("User", "carol")):
        decision = authz.authorize(action="book", resource=az.EntityUID("Doc", "d"),
                                   context={"seats": SECRET})

    assert not decision.allowed and decision.errors
    assert all(SECRET not in error for error in decision.errors)
    assert all(SECRET not in json.dumps(event.to_json()) for event in events)


# -- writing expressions back as Cedar text ------------------------------------------------------


def _body(text: str) -> object:
    document = json.loads(cedarpy.policies_to_json_str(text))
    policy = [*document["staticPolicies"].values(), *document["templates"].values()][0]
    return policy["conditions"][0]["body"]


def _scope(expression: str) -> str:
    principal = "principal == ?principal" if "?principal" in expression else "principal"
    return f"permit ({principal}, action, resource) when {{ {expression} }};"


@settings(max_examples=200, deadline=None)
@given(cedar_expressions)
def test_an_expression_written_back_parses_to_the_same_expression(expression: str) -> None:
    try:
        parsed = _body(_scope(expression))
    except ValueError:
        return  # not Cedar (a chain of more than four `!`, an integer out of range, ...)
    assert _body(_scope(expression_text(parsed))) == parsed  # type: ignore[arg-type]


def test_every_condition_of_the_example_store_is_written_back_faithfully() -> None:
    store = az.PolicyStore.from_directory(EXAMPLE_STORE)
    for policy in store.policies:
        document = json.loads(cedarpy.policies_to_json_str(policy.text))
        for body in [*document["staticPolicies"].values(), *document["templates"].values()]:
            for condition in body.get("conditions", []):
                text = expression_text(condition["body"])
                assert _body(_scope(text)) == condition["body"], (policy.id, text)


def test_expressions_read_with_the_fewest_parentheses() -> None:
    cases = {
        "(context.a + 1) * 2 == 6 && !(principal.x)": "(context.a + 1) * 2 == 6 && !principal.x",
        "(if true then 1 else 2) + 3 > -(4)": "(if true then 1 else 2) + 3 > -(4)",
        '(principal has "a b") || (principal["if"] like "x\\*y*")':
            'principal has "a b" || principal["if"] like "x\\*y*"',
        "(((context.s).contains(1)))": "context.s.contains(1)",
    }
    for given_text, expected in cases.items():
        assert expression_text(_body(_scope(given_text))) == expected  # type: ignore[arg-type]
