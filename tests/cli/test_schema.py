"""``agentauthz schema generate``: the command line over the schema generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cedarpy
import pytest

from agentauthz.cli._main import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
STUB = GOLDEN / "assistant_stub.cedarschema"
SIMPLE_STUB = "entity User; entity Tool;\n"

TOOLS_MODULE = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(ROOT / "examples")!r})
    import agentauthz as az
    from assistant_tools import POLICIES, build_tools

    authz = az.Authorizer.from_directory(POLICIES)
    by_name = build_tools(authz)
    as_list = list(by_name.values())
    not_tools = [print]
""")

MCP_TOOLS = [
    {"name": "get_weather", "description": "Weather for a city",
     "inputSchema": {"type": "object", "properties": {"city": {"type": "string"},
                                                      "days": {"type": "integer"}},
                     "required": ["city"]}},
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding an importable tools module and an MCP tool list."""
    (tmp_path / "agent_tools.py").write_text(TOOLS_MODULE, encoding="utf-8")
    (tmp_path / "mcp.json").write_text(json.dumps({"tools": MCP_TOOLS}), encoding="utf-8")
    (tmp_path / "stub.cedarschema").write_text(SIMPLE_STUB, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("agent_tools", None)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- success --------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["authz", "by_name", "as_list"])
def test_generate_from_guarded_tools_writes_the_golden_schema(
    workdir: Path, capsys: pytest.CaptureFixture[str], attribute: str
) -> None:
    code, out, err = run(capsys, "schema", "generate", "--stub", str(STUB),
                         "--tools", f"agent_tools:{attribute}", "--principal-type", "User",
                         "--output", "schema.cedarschema")
    assert (code, out, err) == (0, "", "")
    golden = (GOLDEN / "assistant_tools.cedarschema").read_text()
    assert (workdir / "schema.cedarschema").read_text() == golden


def test_generate_from_mcp_tools_prints_the_schema(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
                         "--principal-type", "User")
    assert code == 0, err
    cedarpy.Schema.from_str(out)
    assert 'action "get_weather" appliesTo' in out
    assert "city: String" in out and "days?: Long" in out


def test_generate_combines_several_tool_sources_and_a_namespace(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "more.json").write_text(json.dumps([{"name": "ping", "inputSchema": {"type": "object"}}]))
    code, out, err = run(capsys, "schema", "generate", "--stub", str(STUB), "--tools", "agent_tools:authz",
                         "--mcp", "mcp.json", "--mcp", "more.json", "--principal-type", "User",
                         "--namespace", "Agents")
    assert code == 0, err
    schema = cedarpy.Schema.from_str(out)
    actions = {e["uid"]["id"]: e["uid"]["type"]
               for e in json.loads(str(cedarpy.Entities.from_json_str("[]", schema)))}
    assert actions["ping"] == actions["get_weather"] == actions["issue_refund"] == "Agents::Action"
    assert actions["read"] == "Action"


def test_generate_from_a_json_stub_writes_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stub = {"": {"entityTypes": {"User": {"annotations": {"mcp_principal": ""}}, "Tool": {}}, "actions": {}}}
    (workdir / "stub.cedarschema.json").write_text(json.dumps(stub))
    code, out, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema.json", "--mcp", "mcp.json")
    assert code == 0, err
    document = json.loads(out)
    assert document[""]["actions"]["get_weather"]["appliesTo"]["principalTypes"] == ["User"]


def test_console_script_and_module_entry_point_run_the_same_command(workdir: Path) -> None:
    argv = ["schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
            "--principal-type", "User"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    module = subprocess.run([sys.executable, "-m", "agentauthz", *argv], capture_output=True, text=True,
                            env=env, check=False)
    assert module.returncode == 0, module.stderr
    assert 'action "get_weather"' in module.stdout
    script = Path(sys.executable).parent / "agentauthz"
    if not script.exists():
        pytest.skip("the agentauthz console script is not installed (pip install -e .)")
    installed = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env, check=False)
    assert (installed.returncode, installed.stdout) == (0, module.stdout)


# -- problems found: exit 1 -------------------------------------------------------------------


def test_unmappable_mcp_property_exits_1_naming_tool_and_property(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [{"name": "fetch", "inputSchema": {"type": "object", "properties": {
        "opts": {"type": "object", "properties": {
            "mode": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}}}}]
    (workdir / "bad.json").write_text(json.dumps(bad))
    code, out, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "bad.json",
                         "--principal-type", "User")
    assert (code, out) == (1, "")
    assert err.startswith("agentauthz: error: MCP tool 'fetch' property 'opts.mode': oneOf of several types")


def test_action_already_in_the_stub_exits_1_when_replacing_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "stub.cedarschema").write_text(
        SIMPLE_STUB + "action get_weather appliesTo { principal: User, resource: Tool };")
    code, _, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
                       "--principal-type", "User", "--on-existing", "error")
    assert code == 1
    assert "already declares action 'get_weather'" in err
    code, out, _ = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
                       "--principal-type", "User")
    assert code == 0 and out.count('action "get_weather"') == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--principal-type", "Person"], "entity type 'Person' (principal type) is not declared"),
        ([], "no principal types"),
        (["--principal-type", "User", "--tool-type", "Gadget"], "entity type 'Gadget'"),
        (["--principal-type", "User", "--session-type", "Facts"], "session type 'Facts'"),
    ],
)
def test_inconsistent_stub_and_options_exit_1(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
                         *args)
    assert (code, out) == (1, "")
    assert fragment in err


def test_invalid_stub_or_tool_file_content_exits_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "broken.cedarschema").write_text("entity User")
    (workdir / "broken.json").write_text("[{")
    code, _, err = run(capsys, "schema", "generate", "--stub", "broken.cedarschema", "--mcp", "mcp.json",
                       "--principal-type", "User")
    assert code == 1 and "<stub>:" in err
    code, _, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "broken.json",
                       "--principal-type", "User")
    assert code == 1 and "broken.json:1: invalid JSON" in err
    (workdir / "shape.json").write_text(json.dumps({"name": "x"}))
    code, _, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "shape.json",
                       "--principal-type", "User")
    assert code == 1 and "expected a list of tool descriptions" in err


# -- usage errors: exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["schema", "generate", "--mcp", "mcp.json"], "the following arguments are required: --stub"),
        (["schema", "generate", "--stub", "missing.cedarschema", "--mcp", "mcp.json"],
         "--stub missing.cedarschema: no such file"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--mcp", "missing.json"],
         "--mcp missing.json: no such file"),
        (["schema", "generate", "--stub", "stub.cedarschema"], "no tools: give --tools"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--tools", "agent_tools"],
         "expected MODULE:ATTRIBUTE"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--tools", "no_such_module:x"],
         "cannot import 'no_such_module'"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--tools", "agent_tools:missing"],
         "has no attribute 'missing'"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--tools", "agent_tools:not_tools"],
         "expected an Authorizer, or a list or dict of guarded functions"),
        (["schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json", "--on-existing", "merge"],
         "invalid choice: 'merge'"),
        (["schema", "frobnicate"], "invalid choice: 'frobnicate'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert fragment in err


@pytest.mark.parametrize("argv", [[], ["schema"]])
def test_command_without_subcommand_prints_help_and_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "usage: agentauthz" in err and "COMMAND" in err


def test_unwritable_output_is_a_usage_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "schema", "generate", "--stub", "stub.cedarschema", "--mcp", "mcp.json",
                       "--principal-type", "User", "--output", str(workdir / "no" / "dir" / "x"))
    assert code == 2 and "cannot write" in err


def test_help_lists_the_generate_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", "generate", "--help")
    assert code == 0
    for option in ("--stub", "--tools", "--mcp", "--principal-type", "--namespace", "--output"):
        assert option in out


# -- an application whose policies already name the new tool (issue 19) -------------------------

NEW_TOOL_APP = textwrap.dedent("""
    import agentauthz as az

    authz = az.Authorizer.from_directory("store")


    @authz.guard
    def escalate(ticket: str, level: int) -> str:
        return "escalated"


    authz.validate_tools(principal_types=["User"])  # the check an application runs at startup
""")


def _store_naming_a_new_tool(workdir: Path) -> Path:
    store = workdir / "store"
    store.mkdir()
    (store / "schema.cedarschema").write_text("// before `escalate`\nentity User;\nentity Tool;\n")
    (store / "escalations.cedar").write_text(
        '@id("escalate-low")\npermit (principal, action == Action::"escalate", resource)\n'
        "when { context.input.level < 3 };\n")
    (workdir / "support_app.py").write_text(NEW_TOOL_APP, encoding="utf-8")
    sys.modules.pop("support_app", None)
    return store


def test_generate_imports_an_application_whose_policies_name_a_tool_the_schema_lacks(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store_naming_a_new_tool(workdir)
    with pytest.raises(Exception, match="unrecognized action"):
        __import__("support_app")  # imported as the application runs: the store does not load
    sys.modules.pop("support_app", None)

    code, out, err = run(capsys, "schema", "generate", "--stub", str(store / "schema.cedarschema"),
                         "--tools", "support_app:authz", "--principal-type", "User",
                         "--output", str(store / "schema.cedarschema"))

    assert (code, out, err) == (0, "", "")
    generated = (store / "schema.cedarschema").read_text()
    assert generated.startswith("// before `escalate`\nentity User;\nentity Tool;\n")
    assert 'action "escalate" appliesTo' in generated
    assert run(capsys, "validate", str(store))[0] == 0


def test_stores_are_checked_against_their_schema_again_once_generation_imported_the_application(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import agentauthz as az

    store = _store_naming_a_new_tool(workdir)

    code, _, err = run(capsys, "schema", "generate", "--stub", str(store / "schema.cedarschema"),
                       "--tools", "support_app:authz", "--principal-type", "User")

    assert code == 0, err
    with pytest.raises(az.PolicyError,
                       match=r"escalations\.cedar:2:30: \[escalate-low\] unrecognized action"):
        az.PolicyStore.from_directory(store)


def test_a_policy_that_does_not_parse_still_stops_the_import(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store_naming_a_new_tool(workdir)
    (store / "broken.cedar").write_text("permit (principal, action resource);\n")

    code, _, err = run(capsys, "schema", "generate", "--stub", str(store / "schema.cedarschema"),
                       "--tools", "support_app:authz", "--principal-type", "User")

    assert code == 1
    assert "broken.cedar:1:27: unexpected token `resource`" in err


def test_generate_declares_provenance_and_the_agent_of_the_applications_authorizer(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "agent_app.py").write_text(textwrap.dedent("""
        import agentauthz as az
        from agentauthz.session import Provenance, SessionConfig
        authz = az.Authorizer.from_text("permit(principal, action, resource);", agent=az.Agent("bot"),
                                        sessions=SessionConfig(provenance=Provenance(tools={"send_money"})))
        @authz.guard
        def send_money(recipient: str, amount: int) -> str:
            return "sent"
    """), encoding="utf-8")
    (workdir / "agent_stub.cedarschema").write_text(
        "entity User; entity Tool; entity Agent = { version: String, purpose: String };\n", encoding="utf-8")
    code, out, err = run(capsys, "schema", "generate", "--stub", "agent_stub.cedarschema",
                         "--tools", "agent_app:authz", "--principal-type", "User")
    assert code == 0, err
    assert "provenance: {" in out and "provenance_all: {" in out and "agent?: Agent" in out
    cedarpy.Schema.from_str(out)
