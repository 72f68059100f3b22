"""What the console's sign-in is configured with: config.json's body, the Content-Security-Policy, the settings."""

from __future__ import annotations

from gateway.console import client_config, policy
from services.common.settings import Settings

ENTRA = "https://login.microsoftonline.com/0b5e2b3c-0000-4000-8000-000000000001/v2.0"


def test_without_an_issuer_the_console_is_in_dev_mode_and_connects_only_to_the_gateway():
    assert client_config(Settings()) == {"mode": "dev"}
    assert "connect-src 'self';" in policy(Settings())


def test_with_an_issuer_the_console_signs_in_there_and_may_connect_to_its_origin_only():
    settings = Settings(console_oidc_issuer=ENTRA, console_oidc_client_id="c1", console_oidc_scopes="openid x")
    assert client_config(settings) == {"mode": "oidc", "issuer": ENTRA, "clientId": "c1", "scopes": "openid x"}
    directives = dict(d.strip().split(" ", 1) for d in policy(settings).split(";"))
    assert directives["connect-src"] == "'self' https://login.microsoftonline.com"
    assert directives["default-src"] == directives["style-src"] == "'self'"  # nothing inline
    assert "unsafe" not in policy(settings)


def test_the_settings_read_the_console_variables(monkeypatch):
    monkeypatch.setenv("EPM_CONSOLE_OIDC_ISSUER", ENTRA)
    monkeypatch.setenv("EPM_CONSOLE_OIDC_CLIENT_ID", "c1")
    monkeypatch.setenv("EPM_CONSOLE_OIDC_SCOPES", "")
    settings = Settings.from_env()
    assert (settings.console_oidc_issuer, settings.console_oidc_client_id) == (ENTRA, "c1")
    assert settings.console_oidc_scopes == Settings.console_oidc_scopes  # empty: the default
    assert "offline_access" not in settings.console_oidc_scopes.split()  # the console keeps no refresh token
