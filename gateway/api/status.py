"""/api/v1/Status: who am I."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.api.common import authenticate, json_response, operation
from gateway.wire import StatusModel


@operation(StatusModel)
async def status(request: Request) -> Response:
    """The caller's group and key; any valid key may ask, whatever its scopes."""
    principal = await authenticate(request, None)
    answer = StatusModel(
        group_key=principal.group_key,
        api_key_id=principal.api_key_id,
        logged_in=True,
        user_name=f"api-key:{principal.api_key_id}",
        roles=sorted(principal.scopes),
        environment="gateway",
        version=__version__,
    )
    return json_response(answer.wire())
