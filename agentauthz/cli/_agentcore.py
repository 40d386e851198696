"""``agentauthz agentcore export|diff|push|pull``: our tool policies on an AgentCore Gateway's policy engine.

Every command but ``pull`` translates a policy store directory for one gateway
target (``--gateway-arn``, ``--target``, the target's MCP tools ``--mcp``, the
claims standing in for principal groups and attributes), refusing the whole
store when a policy cannot be expressed there. ``export`` writes the result as
a policy store directory that ``agentauthz test`` runs cases against; ``diff``
and ``push`` compare it with (and make) a policy engine's policies; ``pull``
writes a policy engine's policies to files. ``diff``, ``push`` and ``pull``
need boto3 (the ``aws`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentauthz.cli._avp import _client
from agentauthz.cli._common import EXIT_OK, Subparsers, UsageError
from agentauthz.cli._console import printable
from agentauthz.cli._generate import _mcp_tools
from agentauthz.integrations.agentcore import (
    AgentCoreProfile,
    PushPlan,
    TagMapping,
    Translation,
    apply_push,
    plan_push,
    policy_engine_id,
    pull,
    translate,
    write_store,
)

__all__ = ["add_agentcore_command", "diff", "export", "pull_engine", "push"]

SERVICE = "bedrock-agentcore-control"


def add_agentcore_command(commands: Subparsers) -> None:
    """Register ``agentauthz agentcore`` and its subcommands."""
    parser = commands.add_parser(
        "agentcore", help="translate, diff, push and pull policies of an AgentCore Gateway's policy engine",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None)
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)
    export_parser = sub.add_parser("export", help="write the translated policies and the gateway schema "
                                                  "as a directory `agentauthz test` runs cases against")
    _translation_options(export_parser)
    export_parser.add_argument("--out", required=True, metavar="OUT_DIR", help="directory to write")
    export_parser.set_defaults(handler=export)
    for name, handler, text in (("diff", diff, "show what a push would change (nothing is changed)"),
                                ("push", push, "make the policy engine hold the translated policies")):
        command = sub.add_parser(name, help=text)
        _translation_options(command)
        _engine_options(command)
        command.add_argument("--json", action="store_true", help="print the changes as JSON")
        if name == "push":
            command.add_argument("--prune", action="store_true",
                                 help="delete policies the translation does not have")
            command.add_argument("--create-engine", action="store_true",
                                 help="create the policy engine when none has the name given")
            command.add_argument("--no-wait", action="store_true",
                                 help="do not wait for each phase (forbids, then permits) to be ACTIVE "
                                      "before the next")
        command.set_defaults(handler=handler)
    pull_parser = sub.add_parser("pull", help="write a policy engine's Cedar policies to a directory")
    pull_parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (empty or absent)")
    _engine_options(pull_parser)
    pull_parser.set_defaults(handler=pull_engine)


def _translation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="policies", metavar="DIR",
                        help="policy store directory (default: policies)")
    parser.add_argument("--gateway-arn", required=True, metavar="ARN", help="the AgentCore Gateway's ARN")
    parser.add_argument("--target", required=True, metavar="NAME",
                        help="the gateway target: tool t is action AgentCore::Action::\"<NAME>___t\"")
    parser.add_argument("--mcp", action="append", default=[], metavar="TOOLS.json",
                        help="the target's MCP tools (a tools/list answer); repeatable")
    parser.add_argument("--group-claim", action="append", default=[], metavar="TYPE=CLAIM",
                        help="principal in TYPE::\"x\" reads the JSON-array claim CLAIM (e.g. Role=roles)")
    parser.add_argument("--attribute-claim", action="append", default=[], metavar="ATTRIBUTE=CLAIM",
                        help="principal.ATTRIBUTE reads the claim CLAIM (e.g. tenant=tenant)")
    parser.add_argument("--exclude", action="append", default=[], metavar="POLICY_ID",
                        help="keep this policy off the gateway on purpose (e.g. a session rule enforced in "
                             "process); repeatable")


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-engine", required=True, metavar="NAME_OR_ID",
                        help="the AgentCore policy engine, by id or by name")
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--endpoint-url", metavar="URL", help="endpoint to call instead of AWS's")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, claim = value.partition("=")
        if not sep or not key or not claim:
            raise UsageError(f"{option} {value}: expected NAME=CLAIM")
        pairs[key] = claim
    return pairs


def _translation(args: argparse.Namespace) -> Translation:
    from agentauthz.policy._store import PolicyStore
    from agentauthz.tools._spec import ToolSpec

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{args.directory}: no such directory")
    tools = _mcp_tools(args.mcp)
    if not tools:
        raise UsageError("no tools: give the gateway target's MCP tools with --mcp TOOLS.json")
    specs = [ToolSpec.from_json_schema(str(tool["name"]), tool.get("inputSchema") or {}) for tool in tools]
    tags = TagMapping(attributes=_pairs(args.attribute_claim, "--attribute-claim"),
                      groups=_pairs(args.group_claim, "--group-claim"))
    profile = AgentCoreProfile(args.gateway_arn, args.target, specs, tags=tags)
    translation = translate(PolicyStore.from_directory(directory), profile, exclude=args.exclude)
    for skipped in translation.not_applicable:
        print(f"agentauthz: note: {printable(skipped.location)}: policy {printable(skipped.id)!s} left out: "
              f"{printable(skipped.reason)}", file=sys.stderr)
    return translation


def export(args: argparse.Namespace) -> int:
    """``agentauthz agentcore export``: the translation as a policy store directory."""
    translation = _translation(args)
    policies, schema = write_store(translation, args.out)
    print(f"wrote {printable(str(policies))} ({len(translation.policies)} policies) and "
          f"{printable(str(schema))}; run `agentauthz test {printable(str(args.out))}` with your cases")
    return EXIT_OK


def diff(args: argparse.Namespace, client: Any = None) -> int:
    """``agentauthz agentcore diff``: the changes a push would make."""
    translation = _translation(args)
    client = client if client is not None else _client(args, SERVICE)
    plan = plan_push(translation, client, policy_engine_id(client, args.policy_engine))
    _report(args, plan, applied=False)
    return EXIT_OK


def push(args: argparse.Namespace, client: Any = None) -> int:
    """``agentauthz agentcore push``: make the policy engine hold the translated policies."""
    translation = _translation(args)
    client = client if client is not None else _client(args, SERVICE)
    engine = policy_engine_id(client, args.policy_engine, create=args.create_engine)
    plan = plan_push(translation, client, engine, prune=args.prune)
    apply_push(plan, client, wait=not args.no_wait)
    _report(args, plan, applied=True)
    return EXIT_OK


def _report(args: argparse.Namespace, plan: PushPlan, *, applied: bool) -> None:
    counts = plan.counts()
    if args.json:
        json.dump({"policyEngineId": plan.policy_engine_id, "applied": applied, "counts": counts,
                   "changes": [c.as_dict() for c in plan.changes]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    done = {"create": "created", "update": "updated", "replace": "replaced", "delete": "deleted"}
    verbs = done if applied else {action: f"would {action}" for action in done}
    print(f"policy engine {printable(plan.policy_engine_id)}" + ("" if applied else " (nothing changed)"))
    for change in plan.changes:
        if change.action in verbs:
            reason = f"  ({printable(change.reason)})" if change.reason else ""
            print(f"  {verbs[change.action]:<15} {printable(change.id)}{reason}")
        elif change.action == "extra":
            print(f"  {'kept':<15} {printable(change.id)}  ({printable(change.reason)}; --prune deletes it)")
    print(", ".join(f"{counts[action]} {verbs[action] if applied else action}" for action in done)
          + f", {counts['unchanged']} unchanged")


def pull_engine(args: argparse.Namespace, client: Any = None) -> int:
    """``agentauthz agentcore pull``: a policy engine's Cedar policies as ``policies.cedar``."""
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{args.out_dir}: not an empty directory (pull never overwrites files)")
    client = client if client is not None else _client(args, SERVICE)
    result = pull(client, policy_engine_id(client, args.policy_engine), out)
    for warning in result.warnings:
        print(f"agentauthz: warning: {printable(warning)}", file=sys.stderr)
    print(f"wrote {printable(str(out))}: {result.policies} policies ({result.shadow} LOG_ONLY, "
          "as @mode(\"shadow\"))")
    return EXIT_OK
