"""``agentauthz push``, ``pull`` and ``serve-avp``: policy stores on Amazon Verified Permissions.

``push`` syncs a policy store directory to an AVP policy store (schema,
templates, static and template-linked policies; deletions only with
``--prune``), ``pull`` writes a policy store back to files, and ``serve-avp``
serves a directory on a local AVP-compatible endpoint for offline work.

These commands need boto3 (the ``aws`` extra) except ``serve-avp``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from agentauthz._errors import ConfigurationError
from agentauthz._extras import optional_import
from agentauthz.cli._common import EXIT_OK, Subparsers, UsageError
from agentauthz.cli._console import printable

__all__ = ["add_avp_commands", "add_pull_command", "add_push_command", "add_serve_avp_command"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_avp_commands(commands: Subparsers) -> None:
    """Register ``push``, ``pull`` and ``serve-avp``."""
    add_push_command(commands)
    add_pull_command(commands)
    add_serve_avp_command(commands)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-store-id", required=True, metavar="ID",
                        help="the Verified Permissions policy store")
    parser.add_argument("--endpoint-url", metavar="URL",
                        help="endpoint to call instead of AWS's (e.g. the one `agentauthz serve-avp` prints)")
    parser.add_argument("--region", metavar="REGION",
                        help="AWS region (default: the AWS configuration's; us-east-1 for a local endpoint)")


# -- push -----------------------------------------------------------------------------------------


def add_push_command(commands: Subparsers) -> None:
    """``agentauthz push``: sync a policy store directory to a Verified Permissions policy store."""
    parser = commands.add_parser(
        "push", help="sync a policy store directory to a Verified Permissions policy store",
        description=(
            "Make a Verified Permissions policy store hold the directory's schema (as Cedar JSON), "
            "templates, static and template-linked policies. Our policy ids ride in policy names and "
            "descriptions, so pushing again changes nothing. Policies in the store but not in the "
            "directory are listed, and deleted only with --prune. Entities are never pushed: AVP keeps "
            "none (they travel with each request)."))
    parser.add_argument("directory", nargs="?", default="policies", metavar="DIR",
                        help="policy store directory (default: policies)")
    _connection_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="show the changes, make none")
    parser.add_argument("--prune", action="store_true",
                        help="delete policies, templates and links the directory does not have")
    parser.add_argument("--json", action="store_true", help="print the changes as JSON")
    parser.set_defaults(handler=_push)


def _push(args: argparse.Namespace) -> int:
    from agentauthz.avp._sync import apply_push, plan_push
    from agentauthz.policy._store import PolicyStore

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{args.directory}: no such directory")
    store = PolicyStore.from_directory(directory)
    client = _client(args)
    plan = plan_push(store, client, args.policy_store_id, prune=args.prune)
    if not args.dry_run:
        apply_push(plan, client)
    counts = plan.counts()
    if args.json:
        json.dump({"policyStoreId": args.policy_store_id, "dryRun": args.dry_run, "prune": args.prune,
                   "counts": counts, "changes": [c.as_dict() for c in plan.changes]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    verb = {"create": "would create" if args.dry_run else "created",
            "update": "would update" if args.dry_run else "updated",
            "delete": "would delete" if args.dry_run else "deleted"}
    dry_run = " (dry run: nothing changed)" if args.dry_run else ""
    print(f"policy store {printable(args.policy_store_id)}{dry_run}")
    for change in plan.changes:
        if change.action in verb:
            updated = change.reason and change.action == "update"
            reason = f"  ({printable(change.reason)})" if updated else ""
            print(f"  {verb[change.action]:<13} {change.kind:<9} {printable(change.id)}{reason}")
    extra = [c for c in plan.changes if c.action == "extra"]
    for change in extra:
        note = change.reason if change.kind == "schema" else f"{change.reason}; --prune deletes it"
        print(f"  {'kept':<13} {change.kind:<9} {printable(change.id)}  ({printable(note)})")
    if store.entities:
        print(f"  note: {len(store.entities)} entities in entities.json are not pushed (AVP keeps none)")
    summary = (f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"
               if args.dry_run else
               f"{counts['create']} created, {counts['update']} updated, {counts['delete']} deleted")
    print(f"{summary}, {counts['unchanged']} unchanged" + (f", {len(extra)} kept" if extra else ""))
    return EXIT_OK


# -- pull -----------------------------------------------------------------------------------------


def add_pull_command(commands: Subparsers) -> None:
    """``agentauthz pull``: write a Verified Permissions policy store to files."""
    parser = commands.add_parser(
        "pull", help="write a Verified Permissions policy store to a directory",
        description=(
            "Write a policy store as a policy store directory: policies.cedar (static policies), "
            "templates.cedar, template-links.json and schema.cedarschema.json. Every statement carries "
            "@id(\"<our id>\"), so `agentauthz push` of the directory changes nothing. OUT_DIR must be "
            "empty or absent."))
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (empty or absent)")
    _connection_options(parser)
    parser.set_defaults(handler=_pull)


def _pull(args: argparse.Namespace) -> int:
    from agentauthz.avp._sync import pull

    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{args.out_dir}: not an empty directory (pull never overwrites files)")
    result = pull(_client(args), args.policy_store_id, out)
    for warning in result.warnings:
        print(f"agentauthz: warning: {printable(warning)}", file=sys.stderr)
    schema = ", schema" if result.schema else ", no schema"
    print(f"wrote {printable(str(out))}: {result.policies} policies, {result.templates} templates, "
          f"{result.links} links{schema}")
    return EXIT_OK


# -- serve-avp ------------------------------------------------------------------------------------


def add_serve_avp_command(commands: Subparsers) -> None:
    """``agentauthz serve-avp``: a local Verified Permissions endpoint serving a directory."""
    parser = commands.add_parser(
        "serve-avp", help="serve a policy store directory on a local Verified Permissions endpoint",
        description=(
            "Serve the directory on an AVP-compatible endpoint on 127.0.0.1 (boto3, the AWS CLI and "
            "VerifiedPermissionsEngine talk to it with --endpoint-url / endpoint_url=). Prints the "
            "endpoint URL and the policy store id, then serves until Ctrl-C."))
    parser.add_argument("directory", nargs="?", default="policies", metavar="DIR",
                        help="policy store directory (default: policies)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: 0, any free port)")
    parser.set_defaults(handler=_serve_avp)


def _serve_avp(args: argparse.Namespace) -> int:
    from agentauthz.avp._server import LocalVerifiedPermissions, serve_directory

    if not Path(args.directory).is_dir():
        raise UsageError(f"{args.directory}: no such directory")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a TCP port")

    def ready(server: LocalVerifiedPermissions) -> None:
        print(f"Local Verified Permissions endpoint: {server.endpoint_url}")
        print(f"Policy store id: {server.policy_store_id}")
        print(f"  agentauthz push --endpoint-url {server.endpoint_url} "
              f"--policy-store-id {server.policy_store_id} {args.directory}")
        print("Serving until Ctrl-C.")
        sys.stdout.flush()

    try:
        serve_directory(args.directory, host=args.host, port=args.port, ready=ready)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return EXIT_OK


# -- the client -----------------------------------------------------------------------------------


def _client(args: argparse.Namespace, service: str = "verifiedpermissions") -> Any:
    """A boto3 client (``verifiedpermissions`` unless named) from --endpoint-url / --region and the AWS
    configuration.

    A local endpoint (127.0.0.1, localhost) gets dummy credentials and region
    ``us-east-1`` when the AWS configuration has none.
    """
    try:
        boto3 = optional_import("boto3", extra="aws", needed_by="this command")
        botocore_config = optional_import("botocore.config", extra="aws", needed_by="this command")
    except ImportError as exc:
        raise UsageError(str(exc)) from exc
    local = bool(args.endpoint_url) and urlparse(args.endpoint_url).hostname in _LOOPBACK
    session = boto3.session.Session()
    region = args.region or session.region_name or ("us-east-1" if local else None)
    if region is None:
        raise UsageError("no AWS region: give --region or set AWS_REGION")
    options: dict[str, Any] = {"region_name": region, "config": botocore_config.Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)}
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    if local and session.get_credentials() is None:
        options.update(aws_access_key_id="local", aws_secret_access_key="local")
    try:
        return session.client(service, **options)
    except Exception as exc:  # a malformed endpoint URL, unknown region, ...
        raise ConfigurationError(f"cannot build a {service} client: {type(exc).__name__}: "
                                 f"{exc}") from exc

