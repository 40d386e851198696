"""The assistant's tools, guarded by agentauthz over the scenario policies.

Sixteen tools over mail, calendar, files, banking, messaging, the user's account and the
web, with the arguments a real assistant's tools take. Each tool reads or changes the
:class:`~tests.scenarios.world.World` it is built for; a change is recorded there only when
the tool's body ran, which is what the suite counts as "the call ran".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.session import SessionConfig
from tests.scenarios.world import World, WorldEntities

POLICIES = Path(__file__).parent / "policies"

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


def build(world: World, store: az.PolicyStore | None = None) -> Assistant:
    """Guard the tools for ``world`` with the scenario policies (``store`` reuses a loaded one)."""
    audit = az.MemorySink()
    engine = az.LocalEngine(store or az.PolicyStore.from_directory(POLICIES))
    authz = az.Authorizer(engine, entities=WorldEntities(world), audit=[audit],
                          sessions=SessionConfig(reads=READS))
    tools = {tool.__name__: tool for tool in _tools(authz, world)}
    return Assistant(authz=authz, audit=audit, tools=tools, world=world)


def _account(world: World) -> Callable[[dict[str, Any]], az.EntityUID]:
    return lambda _args: az.EntityUID("Account", f"{world.profile.id}-checking")


def _by(kind: str, argument: str) -> Callable[[dict[str, Any]], az.EntityUID]:
    return lambda args: az.EntityUID(kind, args[argument])


def _tools(authz: az.Authorizer, world: World) -> list[Callable[..., Any]]:  # noqa: C901 - one tool set
    mail, files, events, channels = world.emails, world.files, world.events, world.channels
    profile = world.profile

    # -- mail ------------------------------------------------------------------------------
    @authz.guard(resource=_by("Email", "email_id"), resource_types=["Email"])
    def read_email(email_id: str) -> str:
        """Read one e-mail of the user's inbox."""
        email = mail[email_id]
        return f"From: {email.sender}\nSubject: {email.subject}\n\n{email.body}"

    @authz.guard
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an e-mail from the user's address."""
        world.change("send_email", {"to": to, "subject": subject, "body": body})
        return f"sent to {to}"

    @authz.guard(resource=_by("Email", "email_id"), resource_types=["Email"])
    def forward_email(email_id: str, to: str) -> str:
        """Forward an e-mail of the user's inbox."""
        world.change("forward_email", {"email_id": email_id, "to": to})
        return f"forwarded {email_id} to {to}"

    # -- calendar and travel ---------------------------------------------------------------
    @authz.guard(resource=_by("Event", "event_id"), resource_types=["Event"])
    def read_event(event_id: str) -> str:
        """Read a calendar event, with its description."""
        event = events[event_id]
        return f"{event.title} at {event.start} (organizer {event.organizer})\n{event.description}"

    @authz.guard
    def schedule_meeting(title: str, start: str, attendee: str) -> str:
        """Put a meeting in the user's calendar and invite one attendee."""
        world.change("schedule_meeting", {"title": title, "start": start, "attendee": attendee})
        return f"meeting '{title}' with {attendee} at {start}"

    @authz.guard
    def book_travel(traveler: str, destination: str, date: str) -> str:
        """Book a trip, paid with the user's company card."""
        world.change("book_travel", {"traveler": traveler, "destination": destination, "date": date})
        return f"booked {destination} on {date} for {traveler}"

    # -- files -----------------------------------------------------------------------------
    @authz.guard(resource=_by("File", "file_id"), resource_types=["File"])
    def read_file(file_id: str) -> str:
        """Read a file the user owns or that was shared with them."""
        return files[file_id].content

    @authz.guard(resource=_by("File", "file_id"), resource_types=["File"])
    def delete_file(file_id: str) -> str:
        """Delete one of the user's files."""
        world.change("delete_file", {"file_id": file_id})
        del files[file_id]
        return f"deleted {file_id}"

    @authz.guard(resource=_by("File", "file_id"), resource_types=["File"])
    def share_file(file_id: str, email: str) -> str:
        """Share one of the user's files with an e-mail address."""
        world.change("share_file", {"file_id": file_id, "email": email})
        files[file_id].shared_with.add(email)
        return f"shared {file_id} with {email}"

    # -- banking ---------------------------------------------------------------------------
    @authz.guard(resource=_account(world), resource_types=["Account"])
    def list_transactions() -> str:
        """The latest transactions of the user's checking account, with their memos."""
        return "\n".join(f"{t['date']} {t['amount']:+} {t['party']}: {t['memo']}" for t in world.transactions)

    @authz.guard(resource=_account(world), resource_types=["Account"])
    def send_money(recipient_iban: str, amount: int, reference: str) -> str:
        """Transfer money from the user's checking account (amount in whole euros)."""
        world.change("send_money", {"recipient_iban": recipient_iban, "amount": amount, "reference": reference})
        return f"sent {amount} EUR to {recipient_iban}"

    # -- the user's account ----------------------------------------------------------------
    @authz.guard
    def change_password(new_password: str) -> str:
        """Change the user's password."""
        world.change("change_password", {"new_password": new_password})
        profile.password = new_password
        return "password changed"

    @authz.guard
    def update_contact_details(field: str, value: str) -> str:
        """Change the user's phone, address or recovery e-mail."""
        world.change("update_contact_details", {"field": field, "value": value})
        profile.contact_details[field] = value
        return f"{field} updated"

    # -- messaging -------------------------------------------------------------------------
    @authz.guard(resource=_by("Channel", "channel"), resource_types=["Channel"])
    def read_channel(channel: str) -> str:
        """Read a chat channel's latest messages."""
        return "\n".join(channels[channel].messages)

    @authz.guard(resource=_by("Channel", "channel"), resource_types=["Channel"])
    def post_message(channel: str, body: str) -> str:
        """Post a message in a chat channel."""
        world.change("post_message", {"channel": channel, "body": body})
        channels[channel].messages.append(f"{profile.name}: {body}")
        return f"posted in {channel}"

    @authz.guard
    def send_direct_message(to: str, body: str) -> str:
        """Send a direct chat message to an address (colleagues and guests of shared channels)."""
        world.change("send_direct_message", {"to": to, "body": body})
        return f"message sent to {to}"

    @authz.guard(resource=_by("Channel", "channel"), resource_types=["Channel"])
    def invite_to_channel(channel: str, email: str) -> str:
        """Invite an e-mail address into a chat channel."""
        world.change("invite_to_channel", {"channel": channel, "email": email})
        channels[channel].members.add(email)
        return f"invited {email} to {channel}"

    # -- web -------------------------------------------------------------------------------
    @authz.guard
    def fetch_webpage(url: str) -> str:
        """Fetch a web page (its text)."""
        world.change("fetch_webpage", {"url": url})
        return world.webpages.get(url, "404 not found")

    return [read_email, send_email, forward_email, read_event, schedule_meeting, book_travel,
            read_file, delete_file, share_file, list_transactions, send_money, change_password,
            update_contact_details, read_channel, post_message, send_direct_message, invite_to_channel,
            fetch_webpage]

