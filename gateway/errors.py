"""Every error the gateway raises on purpose, with the HTTP answer it becomes.

    GatewayError                      500  root; anything unexpected is wrapped at the boundary
    ├── ValidationError               400  bad input; `errors` maps field -> messages
    │   └── FilterError               400  a filter/order expression that does not parse
    ├── HandshakeFailed               400  the callback did not prove ownership
    ├── Unauthorized                  401  missing, unknown or revoked API key
    ├── Forbidden                     403  the key lacks a scope
    ├── NotFound                      404  absent, or owned by another group
    ├── Conflict                      409  the resource's state does not allow the request now
    │   └── LimitReached              409  a create would take a group past an operator's limit
    ├── PayloadTooLarge               413  request body over the limit
    ├── RateLimited                   429  per-key request rate exceeded
    ├── StoreError                    503  the database failed (driver errors wrapped)
    ├── Unrenderable                       a stored notification cannot be encoded (recorded
    │   │                                  as a permanent failure, never an HTTP answer)
    │   └── Unsealable                409  a stored secret does not open with this gateway's
    │                                      secret key (a delivery fails as Unrenderable)
    └── OutboundError                      an outbound call failed (never an HTTP answer itself)
        ├── AddressNotAllowed              the callback resolves to a refused address
        ├── OutboundTimeout                no complete answer within the timeout
        │   └── OutboundBusy               no request slot of its group freed within it
        └── OutboundConnectionError        could not connect, or the connection broke

The API layer turns any GatewayError into RFC 7807 problem+json from `status`, `title` and
`detail`; there is no per-exception handler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class GatewayError(Exception):
    """Root of the gateway's own errors."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, *, errors: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}


class ValidationError(GatewayError):
    status = 400
    title = "One or more validation errors occurred."

    @classmethod
    def field(cls, name: str, message: str) -> ValidationError:
        """A validation error about one field."""
        return cls(f"{name}: {message}", errors={name: [message]})


class FilterError(ValidationError):
    """A filter or order expression that does not parse; `position` is a 0-based offset."""

    def __init__(self, message: str, position: int | None = None, *, field: str = "filter") -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}", errors={field: [f"{message}{where}"]})
        self.position = position


class HandshakeFailed(GatewayError):
    status = 400
    title = "Callback verification failed"


class Unauthorized(GatewayError):
    status = 401
    title = "Unauthorized"


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"


class NotFound(GatewayError):
    status = 404
    title = "Not Found"


class Conflict(GatewayError):
    status = 409
    title = "Conflict"


class LimitReached(Conflict):
    """A create that would take a group past a limit the operator set (max_webhooks_per_group);
    nothing of it is stored. Deleting what the group no longer needs makes room."""

    @classmethod
    def webhooks(cls, most: int, have: int, adding: int) -> LimitReached:
        """The group has `have` webhooks; `adding` more would pass `most`."""
        return cls(
            f"a group may have at most {most} webhooks (max_webhooks_per_group); this one has "
            f"{have}, and {adding} more would pass the limit, so none was created"
        )


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Payload Too Large"


class RateLimited(GatewayError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreError(GatewayError):
    status = 503
    title = "Service Unavailable"


class Unrenderable(GatewayError):
    """A notification whose payload cannot be encoded: a permanent failure, not retried."""


class Unsealable(Unrenderable):
    """A sealed secret (gateway.sealed) that does not open: sealed with another secret key, or
    altered. A request that needs it cannot be made; an owner sets the secret again."""

    status = 409
    title = "Conflict"


class OutboundError(GatewayError):
    """An outbound request (handshake, test send, delivery) that got no usable answer."""

    status = 502
    title = "Bad Gateway"


class AddressNotAllowed(OutboundError):
    """The callback host resolves to an address the guard refuses; `openable` says whether
    the operator's allow-list (allowed_callback_networks) could open it."""

    def __init__(self, detail: str, *, openable: bool = False) -> None:
        super().__init__(detail)
        self.openable = openable


class OutboundTimeout(OutboundError):
    """No complete answer within the timeout."""


class OutboundBusy(OutboundTimeout):
    """Every request slot of the caller's group stayed taken for the whole timeout."""


class OutboundConnectionError(OutboundError):
    """Could not connect, or the connection broke mid-request."""
