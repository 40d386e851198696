"""Small policy stores for the policy-author command tests: one good, five broken ones.

Each broken store has a good file ``base.cedar`` and one ``broken.cedar`` whose problem sits at
a known line and column, so tests can check the ``file:line:col`` the commands
print.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentauthz.cli._main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_STORE = ROOT / "policies"

SCHEMA = """\
entity User = { dept: String };
entity Document = { owner: User, dept: String };
action read appliesTo { principal: User, resource: Document };
"""

# As Cedar's formatter writes it, so that `format --check` passes on the good store.
GOOD = """\
// Owners read their documents.
@id("owner-reads")
permit (
  principal,
  action == Action::"read",
  resource
)
when { resource.owner == principal };
"""

ENTITIES = [
    {"uid": {"type": "User", "id": "alice"}, "attrs": {"dept": "hr"}, "parents": []},
    {"uid": {"type": "User", "id": "bob"}, "attrs": {"dept": "it"}, "parents": []},
    {"uid": {"type": "Document", "id": "d1"},
     "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}, "dept": "hr"},
     "parents": []},
]

DEPTH = 300


@dataclass(frozen=True)
class Broken:
    """A broken ``broken.cedar`` and where its problem is."""

    kind: str
    text: str
    line: int
    col: int
    message: str


BROKEN = [
    Broken("syntax-error", '// a typo\n@id("typo")\npermit (principal, action resource);\n',
           3, 27, "unexpected token `resource`"),
    Broken("type-error",
           '@id("adds-strings")\npermit (principal, action == Action::"read", resource)\n'
           'when { principal.dept + 1 == 2 };\n',
           3, 8, "expected Long but saw String: `principal.dept + 1`: `principal.dept` is String"),
    Broken("duplicate-id",
           '\n@id("owner-reads")\nforbid (principal, action, resource);\n',
           2, 1, "duplicate policy id 'owner-reads'"),
    Broken("unknown-action",
           '@id("writers")\npermit (principal, action == Action::"write", resource);\n',
           2, 30, 'unrecognized action `Action::"write"`'),
    Broken("over-deep-nesting",
           '@id("deep")\npermit (principal, action, resource)\nwhen { '
           + "(" * DEPTH + "true" + ")" * DEPTH + " };\n",
           3, 8 + 199,  # `{` counts: the 200th parenthesis is level 201
           "nested deeper than 200 levels"),
]
BROKEN_IDS = [broken.kind for broken in BROKEN]


def good_store(root: Path) -> Path:
    """A small valid store: schema, one policy, entities, one ALLOW and one DENY case."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.cedarschema").write_text(SCHEMA, encoding="utf-8")
    (root / "base.cedar").write_text(GOOD, encoding="utf-8")
    (root / "entities.json").write_text(json.dumps(ENTITIES), encoding="utf-8")
    for kind, principal in (("ALLOW", "alice"), ("DENY", "bob")):
        (root / kind).mkdir(exist_ok=True)
        (root / kind / f"{principal}_reads_d1.json").write_text(json.dumps({
            "principal": f'User::"{principal}"', "action": 'Action::"read"',
            "resource": 'Document::"d1"', "context": {}}), encoding="utf-8")
    return root


def broken_store(root: Path, broken: Broken) -> Path:
    """The good store plus ``broken.cedar``."""
    good_store(root)
    (root / "broken.cedar").write_text(broken.text, encoding="utf-8")
    return root


def copy_example_store(destination: Path) -> Path:
    """A writable copy of the example store ``policies/``."""
    shutil.copytree(EXAMPLE_STORE, destination)
    return destination


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in-process: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
