"""GET /docs: the API reference, Swagger UI 5 rendering /openapi.json, loaded from this gateway
alone.

Swagger UI's files come from the installed swagger-ui-py package (`swagger_ui/static`); the page
and the script that starts Swagger UI are ours, so the page runs under a Content-Security-Policy
that allows no inline script and no other host. Like /openapi.json, the page needs no key: it
shows the document, which is public; "Try it out" sends the Api-Key a reader types in.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

ASSETS_PATH = "/docs/assets"
# Swagger UI's files the page loads, with their types (mimetypes' guess for .js differs
# between systems); nothing else in the package is served.
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# No 'unsafe-inline' anywhere: Swagger UI's inline styles are set by React through the DOM
# (element.style), which CSP does not govern, and it writes no <style> element; with this
# policy Chromium reports no violation and the highlighted examples keep their colours
# (tests/browser/test_docs_page.py fails on any console error). img-src data: its stylesheet
# draws every icon as a data: URL.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Webhook gateway API reference</title>
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<script src="{ASSETS_PATH}/swagger-ui-bundle.js" defer></script>
<script src="{ASSETS_PATH}/docs.js" defer></script>
</head>
<body>
<noscript>This page needs JavaScript; the document itself is at
<a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
</body>
</html>
"""

# Ours: starts Swagger UI once the bundle (deferred before it) has run.
SCRIPT = """"use strict";
// The API reference: Swagger UI rendering this gateway's own OpenAPI document.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // BaseLayout shows no validator badge; were it shown, the default would send the
    // document's address to validator.swagger.io.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def _swagger_dir() -> Path:
    return Path(str(importlib.resources.files("swagger_ui") / "static"))


async def page(request: Request) -> Response:
    """The API reference page."""
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


async def asset(request: Request) -> Response:
    """One of the page's files: our script, or one of Swagger UI's that the page loads."""
    name = request.path_params["name"]
    if name == "docs.js":
        return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=HEADERS)
    if name not in SWAGGER_FILES:
        raise HTTPException(404, f"no asset named {name!r}")
    path = _swagger_dir() / name
    return FileResponse(path, media_type=SWAGGER_FILES[name], headers=HEADERS)


# Not API routes: the OpenAPI document, made from gateway.app.API, leaves them out.
ROUTES = [
    Route("/docs", page, methods=["GET"]),
    Route(ASSETS_PATH + "/{name}", asset, methods=["GET"]),
]
