"""The operator's callback settings: how they are read, how require_https_callbacks judges a
callback URL (and says so in /openapi.json), and that the start-up line shows all three."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trustme

from gateway import config, logs, openapi
from gateway.app import API
from gateway.errors import GatewayError, ValidationError
from gateway.schemas import Circumstances, WebhookCreate, WebhookPatch, parse

HTTPS_ONLY = Circumstances(settings=config.Settings(require_https_callbacks=True))
BODY = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST"}


def test_the_settings_come_from_the_environment(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    env = {
        "GATEWAY_MAX_WEBHOOKS_PER_GROUP": "50",
        "GATEWAY_REQUIRE_HTTPS_CALLBACKS": "true",
        "GATEWAY_CA_BUNDLE": str(bundle),
    }
    settings = config.load(env=env)
    assert settings.max_webhooks_per_group == 50
    assert settings.require_https_callbacks is True
    assert settings.ca_bundle == str(bundle)
    defaults = config.Settings()
    assert (defaults.max_webhooks_per_group, defaults.require_https_callbacks) == (0, False)
    assert defaults.ca_bundle is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_WEBHOOKS_PER_GROUP", "-1", "max_webhooks_per_group: must be 0 .no limit. or more"),
        ("REQUIRE_HTTPS_CALLBACKS", "sometimes", "setting require_https_callbacks"),
        ("CA_BUNDLE", "/nonexistent/ca.pem", "setting ca_bundle: cannot read PEM certificates"),
    ],
)
def test_bad_values_stop_the_start_naming_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(GatewayError, match=message):
        config.load(env={f"GATEWAY_{name}": value})


def test_a_bundle_without_certificates_stops_the_start(tmp_path: Path) -> None:
    key_only = tmp_path / "key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(key_only))
    with pytest.raises(GatewayError, match=f"setting ca_bundle: .*{key_only}"):
        config.load(env={"GATEWAY_CA_BUNDLE": str(key_only)})


@pytest.mark.parametrize("url", ["http://partner.example/hook", "HTTP://partner.example/hook"])
def test_https_only_refuses_http_callbacks_on_create_and_patch(url: str) -> None:
    with pytest.raises(ValidationError) as created:
        parse(WebhookCreate, {**BODY, "callbackUrl": url}, given=HTTPS_ONLY)
    with pytest.raises(ValidationError) as patched:
        parse(WebhookPatch, {"callbackUrl": url}, given=HTTPS_ONLY)
    for refused in (created.value, patched.value):
        assert list(refused.errors) == ["callbackUrl"]
        assert "must be an https URL" in refused.errors["callbackUrl"][0]
    # https passes; and without the setting, http does too.
    parse(WebhookCreate, {**BODY, "callbackUrl": "https://partner.example/hook"}, given=HTTPS_ONLY)
    parse(WebhookCreate, {**BODY, "callbackUrl": url}, given=Circumstances())


def _url_pattern(settings: config.Settings, body: str) -> re.Pattern[str]:
    document = openapi.document("test", settings, API)
    pattern = document["components"]["schemas"][body]["properties"]["callbackUrl"]["pattern"]
    return re.compile(pattern)


@pytest.mark.parametrize("body", ["WebhookCreate", "WebhookPatch"])
def test_the_openapi_document_says_https_only(body: str) -> None:
    strict = _url_pattern(HTTPS_ONLY.settings, body)
    assert strict.match("https://partner.example/hook")
    assert not strict.match("http://partner.example/hook")
    assert _url_pattern(config.Settings(), body).match("http://partner.example/hook")


def test_the_start_up_line_shows_the_callback_policy(caplog: pytest.LogCaptureFixture) -> None:
    settings = config.Settings(
        max_webhooks_per_group=50, require_https_callbacks=True, ca_bundle="/etc/ca.pem"
    )
    with caplog.at_level(logging.INFO, logger="gateway.logs"):
        logs.startup_summary("worker", settings)
    [line] = [r for r in caplog.records if r.getMessage() == "gateway worker starting"]
    assert line.__dict__["max_webhooks_per_group"] == 50
    assert line.__dict__["require_https_callbacks"] is True
    assert line.__dict__["ca_bundle"] == "/etc/ca.pem"
