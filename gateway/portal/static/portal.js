// The webhook portal's only script (served from /portal/static: the Content-Security-Policy
// allows no inline script and nothing from another host).
"use strict";

// The entry page: the link's token is in the URL's fragment, which no server or log sees.
// Put it in the form, take it out of the address bar and history, and POST it.
function openPortalLink() {
  const form = document.getElementById("portal-enter");
  if (!form) return;
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (!token) {
    // No new link: on to the session this browser has, if any.
    if (form.dataset.home) window.location.replace(form.dataset.home);
    return;
  }
  document.getElementById("portal-enter-token").value = token;
  history.replaceState(null, "", window.location.pathname);
  form.submit();
}

// Forms marked data-confirm ask first (pause, rotate the secret).
function confirmForms() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  openPortalLink();
  confirmForms();
});
