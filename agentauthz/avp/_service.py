"""What the local Verified Permissions endpoint's operations share: AVP's errors and request members.

:class:`ServiceError` is a modeled AVP error (``{"__type": ..., "message": ...}`` with
AVP's HTTP status); the helpers read required, union and JSON members of a request
body, page lists and make ids and timestamps as AVP does.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import secrets
import string
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ServiceError",
    "invalid",
    "json_member",
    "new_id",
    "not_found",
    "one_of",
    "paginate",
    "required_string",
    "timestamp",
    "with_next_token",
]


_ID_ALPHABET = string.ascii_letters + string.digits


_LIST_DEFAULT = 10


_LIST_MAX = 50


_ERROR_STATUS = {
    "ValidationException": 400, "ThrottlingException": 400, "ConflictException": 400,
    "ResourceNotFoundException": 400, "AccessDeniedException": 400,
    "ServiceQuotaExceededException": 400, "UnknownOperationException": 400,
    "SerializationException": 400, "InternalServerException": 500,
}


class ServiceError(Exception):
    """A modeled AVP error, answered as ``{"__type": ..., "message": ...}``."""

    def __init__(self, code: str, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else _ERROR_STATUS.get(code, 400)
        self.extra = extra


def invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def not_found(kind: str, resource_id: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", f"{kind.replace('_', ' ').lower()} not found",
                        resourceId=resource_id, resourceType=kind)


def timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def required_string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise invalid(f"{key} is required")
    return value


def one_of(body: Mapping[str, Any], key: str, members: tuple[str, ...]) -> Mapping[str, Any]:
    value = body.get(key)
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in members:
        raise invalid(f"{key} must set exactly one of {', '.join(members)}")
    return value


def json_member(text: Any, kind: type, what: str) -> Any:
    if not isinstance(text, str):
        raise invalid(f"{what} must be a string")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"{what} is not JSON") from exc
    if not isinstance(value, kind):
        raise invalid(f"{what} must be a JSON {'object' if kind is dict else 'array'}")
    return value


def paginate(items: list[Any], body: Mapping[str, Any]) -> tuple[list[Any], str | None]:
    limit = body.get("maxResults", _LIST_DEFAULT)
    if not isinstance(limit, int) or not 1 <= limit <= _LIST_MAX:
        raise invalid(f"maxResults must be 1 to {_LIST_MAX}")
    start = 0
    token = body.get("nextToken")
    if token is not None:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except ValueError as exc:
            raise invalid("invalid nextToken") from exc
    page = items[start: start + limit]
    more = start + limit < len(items)
    return page, base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None


def with_next_token(answer: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        answer["nextToken"] = token
    return answer
