"""The assistant's tools, guarded by agentauthz over the scenario policies.

Sixteen tools over mail, calendar, files, banking, messaging, the user's account and the
web, with the arguments a real assistant's tools take. Each tool reads or changes the
:class:`~tests.scenarios.world.World` it is built for; a change is recorded there only when
the tool's body ran, which is what the suite counts as "the call ran".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.session import DEFAULT_EXTRACTORS, ApprovalConfig, Extractor, Provenance, SessionConfig
from agentauthz.session._approvals import Approver
from agentauthz.tools._spec import OnDeny
from tests.scenarios.world import World, WorldEntities

POLICIES = Path(__file__).parent / "policies"

#: Tools whose arguments carry ``context.provenance``: the ones naming who gets something or what
#: is changed. Every tool result is a source labelled ``untrusted`` (the default), the user's
#: request one labelled ``user``.
TRACKED = frozenset({"send_money", "send_email", "send_direct_message", "forward_email", "delete_file",
                     "share_file", "invite_to_channel", "schedule_meeting", "update_contact_details"})

#: Channels as people write them ("#partner-acme"); a channel argument is the bare name.
CHANNELS = Extractor("channel", r"#[a-z0-9][a-z0-9-]*|^[a-z0-9][a-z0-9-]*$", lambda match: match.lstrip("#"))

#: Tools whose completed calls put what they read into the session (its labels in ``seen``).
READS = frozenset({"read_email", "read_file", "read_event", "read_channel", "list_transactions",
                   "fetch_webpage"})


@dataclass
class Assistant:
    """One run's Authorizer, its audit events and the guarded tools by name."""

    authz: az.Authorizer
    audit: az.MemorySink
    tools: dict[str, Callable[..., Any]]
    world: World


def build(world: World, store: az.PolicyStore, engine: az.Engine | None = None,
          approver: Approver | None = None, on_deny: OnDeny = "raise") -> Assistant:
    """Guard the tools for ``world`` with the scenario policies in ``store``.

    ``engine`` decides (default: a new embedded engine over ``store``; runs share one to
    share its caches). An engine that is not embedded (Verified Permissions) takes the
    session's shape and the approvable policies from ``store``: a Verified Permissions
    policy store keeps no annotations. ``approver`` answers held calls at once (else they
    raise ``az.ApprovalRequired``); ``on_deny="message"`` returns refusals as a model reads them.
    """
    audit = az.MemorySink()
    provenance = Provenance(tools=TRACKED, extractors=(*DEFAULT_EXTRACTORS, CHANNELS))
    sessions = SessionConfig(reads=READS, provenance=provenance, approvals=ApprovalConfig(approver=approver))
    if engine is not None and not isinstance(engine, az.LocalEngine):
        sessions = SessionConfig(reads=READS, provenance=provenance, schema=_schema_json(store),
                                 approvals=ApprovalConfig(approvable=store.approvable, approver=approver))
    authz = az.Authorizer(engine or az.LocalEngine(store), entities=WorldEntities(world), audit=[audit],
                          record_requests=True, sessions=sessions)
    tools = {tool.__name__: tool for tool in _tools(authz, world, on_deny)}
    return Assistant(authz=authz, audit=audit, tools=tools, world=world)


@functools.cache
def _schema_json(store: az.PolicyStore) -> dict[str, Any]:
    """The store's schema as JSON, converted once for all runs."""
    return dict(json.loads(schema_json_text(store.schema_text or "")))


#: Tools acting on a resource named by one of their arguments: (entity type, argument).
NAMED_RESOURCES: dict[str, tuple[str, str]] = {
    "read_email": ("Email", "email_id"), "forward_email": ("Email", "email_id"),
    "read_event": ("Event", "event_id"),
    "read_file": ("File", "file_id"), "delete_file": ("File", "file_id"), "share_file": ("File", "file_id"),
    "read_channel": ("Channel", "channel"), "post_message": ("Channel", "channel"),
    "invite_to_channel": ("Channel", "channel"),
}
#: Tools acting on the user's checking account.
ACCOUNT_TOOLS = frozenset({"list_transactions", "send_money"})


def resource_of(world: World, tool: str, arguments: dict[str, Any]) -> az.EntityUID:
    """The resource a call of ``tool`` acts on (``Tool::"<tool>"`` for a tool that names none)."""
    if tool in NAMED_RESOURCES:
        kind, argument = NAMED_RESOURCES[tool]
        return az.EntityUID(kind, arguments[argument])
    if tool in ACCOUNT_TOOLS:
        return az.EntityUID("Account", f"{world.profile.id}-checking")
    return az.EntityUID("Tool", tool)


def _resource(world: World, tool: str) -> dict[str, Any]:
    """The guard options that name the resource of ``tool``."""
    if tool not in NAMED_RESOURCES and tool not in ACCOUNT_TOOLS:
        return {}
    kind = NAMED_RESOURCES[tool][0] if tool in NAMED_RESOURCES else "Account"
    return {"resource": lambda args: resource_of(world, tool, args), "resource_types": [kind]}


def _tools(authz: az.Authorizer, world: World, on_deny: OnDeny) -> list[Callable[..., Any]]:
    mail, files, events, channels = world.emails, world.files, world.events, world.channels
    profile = world.profile

    # -- mail ------------------------------------------------------------------------------
    @authz.guard(**_resource(world, "read_email"), on_deny=on_deny)
    def read_email(email_id: str) -> str:
        """Read one e-mail of the user's inbox."""
        email = mail[email_id]
        return f"From: {email.sender}\nSubject: {email.subject}\n\n{email.body}"

    @authz.guard(on_deny=on_deny)
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an e-mail from the user's address."""
        world.change("send_email", {"to": to, "subject": subject, "body": body})
        return f"sent to {to}"

    @authz.guard(**_resource(world, "forward_email"), on_deny=on_deny)
    def forward_email(email_id: str, to: str) -> str:
        """Forward an e-mail of the user's inbox."""
        world.change("forward_email", {"email_id": email_id, "to": to})
        return f"forwarded {email_id} to {to}"

    # -- calendar and travel ---------------------------------------------------------------
    @authz.guard(**_resource(world, "read_event"), on_deny=on_deny)
    def read_event(event_id: str) -> str:
        """Read a calendar event, with its description."""
        event = events[event_id]
        return f"{event.title} at {event.start} (organizer {event.organizer})\n{event.description}"

    @authz.guard(on_deny=on_deny)
    def schedule_meeting(title: str, start: str, attendee: str) -> str:
        """Put a meeting in the user's calendar and invite one attendee."""
        world.change("schedule_meeting", {"title": title, "start": start, "attendee": attendee})
        return f"meeting '{title}' with {attendee} at {start}"

    @authz.guard(on_deny=on_deny)
    def book_travel(traveler: str, destination: str, date: str) -> str:
        """Book a trip, paid with the user's company card."""
        world.change("book_travel", {"traveler": traveler, "destination": destination, "date": date})
        return f"booked {destination} on {date} for {traveler}"

    # -- files -----------------------------------------------------------------------------
    @authz.guard(**_resource(world, "read_file"), on_deny=on_deny)
    def read_file(file_id: str) -> str:
        """Read a file the user owns or that was shared with them."""
        return files[file_id].content

    @authz.guard(**_resource(world, "delete_file"), on_deny=on_deny)
    def delete_file(file_id: str) -> str:
        """Delete one of the user's files."""
        world.change("delete_file", {"file_id": file_id})
        del files[file_id]
        return f"deleted {file_id}"

    @authz.guard(**_resource(world, "share_file"), on_deny=on_deny)
    def share_file(file_id: str, email: str) -> str:
        """Share one of the user's files with an e-mail address."""
        world.change("share_file", {"file_id": file_id, "email": email})
        files[file_id].shared_with.add(email)
        return f"shared {file_id} with {email}"

    # -- banking ---------------------------------------------------------------------------
    @authz.guard(**_resource(world, "list_transactions"), on_deny=on_deny)
    def list_transactions() -> str:
        """The latest transactions of the user's checking account, with their memos."""
        return "\n".join(f"{t['date']} {t['amount']:+} {t['party']}: {t['memo']}" for t in world.transactions)

    @authz.guard(**_resource(world, "send_money"), on_deny=on_deny)
    def send_money(recipient_iban: str, amount: int, reference: str) -> str:
        """Transfer money from the user's checking account (amount in whole euros)."""
        world.change("send_money", {"recipient_iban": recipient_iban, "amount": amount,
                                    "reference": reference})
        return f"sent {amount} EUR to {recipient_iban}"

    # -- the user's account ----------------------------------------------------------------
    @authz.guard(on_deny=on_deny)
    def change_password(new_password: str) -> str:
        """Change the user's password."""
        world.change("change_password", {"new_password": new_password})
        profile.password = new_password
        return "password changed"

    @authz.guard(on_deny=on_deny)
    def update_contact_details(field: str, value: str) -> str:
        """Change the user's phone, address or recovery e-mail."""
        world.change("update_contact_details", {"field": field, "value": value})
        profile.contact_details[field] = value
        return f"{field} updated"

    # -- messaging -------------------------------------------------------------------------
    @authz.guard(**_resource(world, "read_channel"), on_deny=on_deny)
    def read_channel(channel: str) -> str:
        """Read a chat channel's latest messages."""
        return "\n".join(channels[channel].messages)

    @authz.guard(**_resource(world, "post_message"), on_deny=on_deny)
    def post_message(channel: str, body: str) -> str:
        """Post a message in a chat channel."""
        world.change("post_message", {"channel": channel, "body": body})
        channels[channel].messages.append(f"{profile.name}: {body}")
        return f"posted in {channel}"

    @authz.guard(on_deny=on_deny)
    def send_direct_message(to: str, body: str) -> str:
        """Send a direct chat message to an address (colleagues and guests of shared channels)."""
        world.change("send_direct_message", {"to": to, "body": body})
        return f"message sent to {to}"

    @authz.guard(**_resource(world, "invite_to_channel"), on_deny=on_deny)
    def invite_to_channel(channel: str, email: str) -> str:
        """Invite an e-mail address into a chat channel."""
        world.change("invite_to_channel", {"channel": channel, "email": email})
        channels[channel].members.add(email)
        return f"invited {email} to {channel}"

    # -- web -------------------------------------------------------------------------------
    @authz.guard(on_deny=on_deny)
    def fetch_webpage(url: str) -> str:
        """Fetch a web page (its text)."""
        world.change("fetch_webpage", {"url": url})
        return world.webpages.get(url, "404 not found")

    return [read_email, send_email, forward_email, read_event, schedule_meeting, book_travel,
            read_file, delete_file, share_file, list_transactions, send_money, change_password,
            update_contact_details, read_channel, post_message, send_direct_message, invite_to_channel,
            fetch_webpage]

