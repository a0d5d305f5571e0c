"""The partner portal: server-rendered pages under /portal, served by the gateway itself.

Shape:

- A partner arrives with a link made by POST /api/v1/PortalSessions or `gateway portal-link`
  (gateway.portal.tokens: a signed token in the URL's fragment, bound to one group). The entry
  page (gateway.portal.entry) exchanges it, once, for a signed session cookie (HttpOnly,
  SameSite=Strict, path /portal) holding the group, read-only, the session's end and its CSRF
  token, and redirects to a URL without the token.
- Each page module (gateway.portal.webhooks, ...) is a set of Starlette endpoints wrapped in
  `page` (a refusal or error becomes a page saying what to do, with its 4xx status). An
  endpoint finds its group with `portal_session(request)`, renders with
  `portal_page(request, "template.html", **context)` (templates/ extends base.html), and
  reads a state-changing form with `changing_form(request)`, which refuses (403, nothing
  changed) a form without the session's CSRF token, one from another site, or any from a
  read-only session. A form that succeeds answers with `flash.done`: a 303 to the page of
  what it changed, carrying what that page shows once (notice, new secret, test result) in a
  signed cookie, so a reload sends nothing again. Pages call the same services as the API
  (ctx.management, ctx.store, gateway.schemas for bodies), so every rule of the API holds
  here too.
- Every response under /portal carries a restrictive Content-Security-Policy (no inline
  script or style, nothing from another host, no framing), nosniff, no-referrer and no-store
  (web.SecurityHeaders). The only script and stylesheet are ours, in static/.

gateway.portal.routes.PAGES is every route of the portal by path and method; the app mounts it
(routes.mount) and the isolation tests are generated from it, so a new page cannot escape
them. To add pages: write a module of endpoints, add its paths to PAGES. This package's own
module imports nothing, so `gateway portal-link` loads only gateway.portal.tokens.
"""
