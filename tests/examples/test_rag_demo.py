"""examples/rag_filtering.py (part of `make demo`) runs and shows per-user context."""

from __future__ import annotations

from tests.examples.demos import run

DEMO = "examples/rag_filtering.py"


def context_of(stdout: str, user: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{user} ("))
    line = next(line for line in lines[start:] if "context for the model:" in line)
    return [chunk.strip() for chunk in line.split(":", 1)[1].split(",")]


def decisions_of(stdout: str, user: str) -> dict[str, str]:
    """Document -> kept / allowed / dropped, as the demo lists them for one user."""
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{user} ("))
    found = {}
    for line in lines[start + 1:]:
        words = line.split()
        if not words or words[0] not in ("kept", "allowed", "dropped"):
            break
        found[words[1]] = words[0]
    return found


def test_rag_demo_gives_two_users_different_correct_context() -> None:
    result = run(DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    bob = {chunk.split("#")[0] for chunk in context_of(result.stdout, "bob")}
    carol = {chunk.split("#")[0] for chunk in context_of(result.stdout, "carol")}
    # bob: public, his own department's internal documents, and the roadmap shared with him
    assert bob <= {"acme-handbook", "acme-support-playbook", "acme-eng-roadmap"}
    # carol: finance (clearance 3) and public documents
    assert carol <= {"acme-handbook", "acme-budget", "acme-q3-results", "acme-vendor-contract"}
    assert not any(doc.startswith("globex") for doc in bob | carol)
    assert bob != carol
    assert "dropped" in result.stdout and "tenant-isolation" in result.stdout
    assert "rounds" in result.stdout


def test_kept_means_in_the_context_and_allowed_means_permitted_but_beyond_k() -> None:
    stdout = run(DEMO).stdout
    legend = stdout.split("bob (", 1)[0]
    assert "kept     the policies allow it, and it is in the context" in legend
    assert "allowed  the policies allow it too, but k = 4 more similar chunks filled the context" in legend
    for user in ("bob", "carol"):
        context = {chunk.split("#")[0] for chunk in context_of(stdout, user)}
        decided = decisions_of(stdout, user)
        assert {doc for doc, outcome in decided.items() if outcome == "kept"} == context
        assert not {doc for doc, outcome in decided.items() if outcome != "kept"} & context
    assert "allowed" in decisions_of(stdout, "carol").values()  # the case the legend explains
