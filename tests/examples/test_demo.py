"""`make demo` runs examples/demo.py and the other demos: they succeed, say what they show,
and need only the extras `make demo` installs."""

from __future__ import annotations

from tests.docs import requirements
from tests.examples.demos import ROOT, demo_extras, demo_scripts, run

DEMO = "examples/demo.py"


def test_demo_exits_zero_and_shows_allowed_and_denied_requests() -> None:
    result = run(DEMO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("ALLOW") for line in lines)
    assert any(line.strip().startswith("DENY") for line in lines)


def test_demo_prints_determining_policy_ids_without_log_noise() -> None:
    result = run(DEMO)
    assert "tenant-isolation" in result.stdout
    assert "refund-finance-limit" in result.stdout
    assert "acme-no-external-email-after-confidential" in result.stdout  # the session section
    assert result.stderr == ""


def test_demo_shows_what_the_session_saw_before_the_email_it_then_refuses() -> None:
    lines = [line.strip() for line in run(DEMO).stdout.splitlines()]
    seen = next(n for n, line in enumerate(lines) if line.startswith('session.see("confidential"'))
    emails = [n for n, line in enumerate(lines) if "-> send_email" in line and "customer@example.com"
              in lines[n + 1]]
    allowed_before, refused_after = emails
    assert allowed_before < seen < refused_after
    assert lines[allowed_before].startswith("ALLOW") and lines[refused_after].startswith("DENY")
    assert lines[refused_after + 2] == "policies: acme-no-external-email-after-confidential"
    assert "'confidential'" in lines[seen + 1]  # the session's labels, shown before the refusal


def test_the_demo_explains_how_to_read_a_decision_line() -> None:
    head = run(DEMO).stdout.split("\n1. ", 1)[0]
    assert "user -> action on resource" in head and "policies that determined it" in head


def test_make_demo_runs_every_demo() -> None:
    assert demo_scripts() == ["examples/demo.py", "examples/langchain_agent.py", "examples/rag_filtering.py",
                              "examples/bedrock_agents/run.py", "examples/strands_agent.py",
                              "examples/mcp/client.py", "examples/approvals.py",
                              "examples/agentcore_gateway.py"]


def test_make_demo_installs_what_the_demos_import_and_none_of_the_test_tools() -> None:
    installed = requirements.installed_with(demo_extras())
    assert not {"pytest", "hypothesis", "mypy", "ruff"} & installed
    for script in demo_scripts():
        folder = (ROOT / script).parent
        sources = [ROOT / script, *[folder / f"{name}.py" for name in ("assistant_tools", "lambda_function")
                                    if (folder / f"{name}.py").exists()]]
        local = {path.stem for path in folder.glob("*.py")}
        for source in sources:
            imported = requirements.imported_modules(source.read_text(encoding="utf-8"))
            modules = requirements.third_party(imported) - local
            for module in modules:
                assert requirements.distributions_of(module) & installed, (
                    f"{script} imports {module}: add its extra to DEMO_EXTRAS in the Makefile")
