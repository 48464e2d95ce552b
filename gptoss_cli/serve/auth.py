"""The API key check: `Authorization: Bearer KEY`, compared in constant time."""

from __future__ import annotations

import hmac

from .errors import APIError

__all__ = ["check_key", "OPEN_PATHS"]

#: endpoints anyone may call (a load balancer's health probe has no key)
OPEN_PATHS = frozenset({"/health"})


def check_key(authorization: str | None, key: str) -> None:
    """APIError 401 unless the header carries exactly `key` (hmac.compare_digest: no timing leak)."""
    given = ""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass")):
        raise APIError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer KEY' with the server's --api-key",
            code="invalid_api_key",
        )
