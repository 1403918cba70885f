"""API keys: each with a role (admin, producer, consumer) and an optional
namespace scope. gRPC sends one as ``x-api-key`` or ``authorization: Bearer``.

Roles: admin may do everything; a producer enqueues and reads; a consumer
leases, settles and reads. A key scoped to a namespace touches only that one.
With no key configured the node is open (and says so loudly at start).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from kokaq.core import InvalidArgument, PermissionDenied, Unauthenticated
from kokaq.core.validation import check_name
from kokaq.server.operations import Role

__all__ = ["ApiKey", "Authenticator", "parse_keys"]

_ROLES = (Role.ADMIN, Role.PRODUCER, Role.CONSUMER)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    role: str
    namespace: str | None = None


def parse_keys(specs: Iterable[str]) -> list[ApiKey]:
    """Keys from ``KEY:ROLE[:NAMESPACE]`` entries (comma-separated lists allowed)."""
    keys: list[ApiKey] = []
    for spec in specs:
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            parts = entry.split(":")
            if len(parts) not in (2, 3) or len(parts[0]) < 8:
                raise InvalidArgument(
                    "api_key", "must be KEY:ROLE or KEY:ROLE:NAMESPACE, KEY of 8+ characters"
                )
            if parts[1] not in _ROLES:
                raise InvalidArgument("api_key", f"role must be one of {', '.join(_ROLES)}")
            namespace = check_name("api_key.namespace", parts[2]) if len(parts) == 3 else None
            keys.append(ApiKey(parts[0], parts[1], namespace))
    return keys


class Authenticator:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = list(keys)

    @property
    def open(self) -> bool:
        return not self._keys

    def key_of(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        for name, value in metadata:
            text = value.decode() if isinstance(value, bytes) else value
            if name == "x-api-key":
                return text
            if name == "authorization" and text.lower().startswith("bearer "):
                return text[7:].strip()
        return None

    def check(self, presented: str | None, roles: tuple[str, ...], namespace: str) -> None:
        """Raise Unauthenticated / PermissionDenied unless the key may make the call."""
        if self.open:
            return
        if not presented:
            raise Unauthenticated("an API key is required (x-api-key or authorization: Bearer)")
        found = next((k for k in self._keys if hmac.compare_digest(k.key, presented)), None)
        if found is None:
            raise Unauthenticated("unknown API key")
        if found.role != Role.ADMIN and Role.ANY not in roles and found.role not in roles:
            raise PermissionDenied(f"a {found.role} key may not make this call")
        if found.namespace is not None and found.namespace != namespace:
            raise PermissionDenied(f"this key is limited to namespace {found.namespace!r}")
