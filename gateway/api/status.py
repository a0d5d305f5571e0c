"""/api/v1/Status: who am I."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.api.common import authenticate, json_response


async def status(request: Request) -> Response:
    """The caller's group and key; any valid key may ask, whatever its scopes."""
    principal = await authenticate(request, None)
    return json_response(
        {
            "groupKey": str(principal.group_key),
            "apiKeyId": str(principal.api_key_id),
            "loggedIn": True,
            "userName": f"api-key:{principal.api_key_id}",
            "roles": sorted(s.value for s in principal.scopes),
            "environment": "gateway",
            "version": __version__,
        }
    )
