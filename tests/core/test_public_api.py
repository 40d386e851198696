"""The public surface: one sorted __all__, contract names, no optional dependency at import."""

from __future__ import annotations

import subprocess
import sys

import agentauthz as az

CONTRACT_NAMES = {
    "AccessDenied", "Authorizer", "AuthzError", "ConfigurationError", "Decision", "EngineError",
    "Entity", "EntityUID", "IdentityError", "Injected", "LocalEngine", "PolicyError", "PolicyStore",
    "Request", "ToolSpec", "decimal", "ipaddr",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(az.__all__) == sorted(set(az.__all__))


def test_every_name_in_all_is_importable() -> None:
    for name in az.__all__:
        assert getattr(az, name) is not None, name


def test_contract_names_from_design_are_exported() -> None:
    assert set(az.__all__) >= CONTRACT_NAMES


def test_public_modules_do_not_leak_private_helpers() -> None:
    public = {name for name in dir(az) if not name.startswith("_")}
    # `annotations` is bound by `from __future__ import annotations`.
    wings = {"avp", "cli", "engines", "guardrails", "integrations", "policy", "retrieval", "session",
             "testing", "tools"}
    modules = wings | {"annotations"}
    assert public - set(az.__all__) - modules == set()


def test_every_library_error_derives_from_authz_error() -> None:
    for name in ("AccessDenied", "PolicyError", "EngineError", "ConfigurationError",
                 "IdentityError", "InvalidValueError", "InvalidArguments"):
        assert issubclass(getattr(az, name), az.AuthzError), name


def test_import_loads_neither_boto3_nor_langchain_nor_jwt() -> None:
    code = (
        "import sys, agentauthz, agentauthz.testing\n"
        "banned = ('boto3', 'botocore', 'langchain_core', 'langchain', 'jwt')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in banned]\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_modules_never_import_integration_dependencies() -> None:
    import pathlib

    root = pathlib.Path(az.__file__).parent
    leaves = {root / "integrations", root / "avp"}
    for path in root.rglob("*.py"):
        if any(path == leaf or leaf in path.parents for leaf in leaves):
            continue
        text = path.read_text()
        for banned in ("import boto3", "import botocore", "langchain_core", "from langchain"):
            assert banned not in text, f"{path.name} imports {banned}"


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        az.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_tool_spec_from_json_schema_is_public() -> None:
    schema = {"type": "object", "properties": {"host": {"type": "string"}}}
    spec = az.ToolSpec.from_json_schema("ping", schema)
    assert spec.parameters == ("host",)


def test_tool_settings_are_public_and_build_a_tools_spec() -> None:
    schema = {"type": "object", "properties": {"amount": {"type": "integer"}}}
    spec = az.ToolSettings(action="refund", sum_arguments="amount").spec_from_json_schema(
        schema, name="issue_refund", description="", on_deny="message")
    assert (spec.action, spec.sums, spec.on_deny) == ("refund", ("amount",), "message")
