"""`epm token`: a dev token holds no directory role unless asked (a reviewer must not be able to grant herself
roles); without scopes it is an application's token, with no user in it. And the CLI hides the one warning a
dependency prints on every command, no other."""

from __future__ import annotations

import warnings

import jwt
import pytest

from services import cli

SECRET = "a-test-secret-of-enough-length-for-hs256-0123456789"


def minted(capsys, monkeypatch, *argv: str) -> dict:
    monkeypatch.setenv("EPM_JWT_SECRET", SECRET)
    cli.main(["token", *argv])
    return jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"], options={"verify_aud": False})


def test_the_default_token_is_the_dev_admin_without_a_directory_role(capsys, monkeypatch):
    claims = minted(capsys, monkeypatch)
    assert "wids" not in claims
    assert (claims["oid"], claims["upn"], claims["tid"]) == (cli.DEV_ADMIN, "admin@contoso.example", cli.DEV_TENANT)
    assert set(claims["scp"].split()) == set(cli.ALL_SCOPES)


def test_a_directory_role_only_when_asked(capsys, monkeypatch):
    rita = minted(capsys, monkeypatch, "--oid", "5d1c0b7e-0000-4000-8000-00000000000a", "--upn", "rita@contoso.example")
    admin = minted(capsys, monkeypatch, "--wids", cli.GLOBAL_ADMINISTRATOR)
    assert "wids" not in rita and rita["upn"] == "rita@contoso.example"
    assert admin["wids"] == [cli.GLOBAL_ADMINISTRATOR]


def test_without_scopes_it_is_an_application_token(capsys, monkeypatch):
    claims = minted(capsys, monkeypatch, "--scopes", "", "--roles", "MmdSupport.ReadWrite")
    assert claims["roles"] == ["MmdSupport.ReadWrite"]
    assert "scp" not in claims and not claims.get("upn") and "wids" not in claims
    assert claims["oid"] == cli.DEV_APP


def test_an_application_token_with_a_user_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("EPM_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit, match="drop --upn"):
        cli.main(["token", "--scopes", "", "--roles", "MmdSupport.ReadWrite", "--upn", "agent@partner.example"])
    assert capsys.readouterr().out == ""


def test_only_the_runtime_dir_warning_is_hidden(capsys, monkeypatch):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        minted(capsys, monkeypatch)  # installs the CLI's filter
        warnings.warn("XDG_RUNTIME_DIR is not set, falling back to /tmp/runtime-0", UserWarning, stacklevel=1)
        warnings.warn("something else went wrong", UserWarning, stacklevel=1)
        warnings.warn("XDG_RUNTIME_DIR is not set", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else went wrong", "XDG_RUNTIME_DIR is not set"]
