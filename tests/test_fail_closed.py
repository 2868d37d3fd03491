"""Outside development the service refuses to serve with what is in this repository: the
built-in JWT and webhook secrets (anyone could sign a BILLING_ADMIN token or a bank webhook
and move money) and the sandbox processors (which move no real money). `make run` (a
loopback-only bind) and DEVELOPMENT=true are development."""

from __future__ import annotations

import os
import subprocess

import pytest

from server import app as server_app
from server.settings import SERVE_HOST, Settings, SettingsError, refuse_unsafe
from tests import clock

SECRETS = {"JWT_SECRET": "a-real-secret-of-at-least-thirty-two-bytes-0123", "BANK_WEBHOOK_SECRET": "whsec_real_one",
           "FILES_SIGNING_KEY": "a-real-files-key-of-at-least-thirty-two-bytes-01"}
EVERY = ["JWT_SECRET", "BANK_WEBHOOK_SECRET", "FILES_SIGNING_KEY", "PAYMENT_GATEWAY", "BANK_GATEWAY"]


def _env(**changes: str) -> dict[str, str]:
    """This process's environment without any setting that makes development or sets a secret."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEVELOPMENT", SERVE_HOST, *EVERY}}
    return {**env, **changes}


def _serve(host: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(clock.command("server.cli", "serve", "--host", host, "--port", "1"),
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("changes", "named"), [
    ({}, EVERY),
    (SECRETS, ["PAYMENT_GATEWAY", "BANK_GATEWAY"]),
], ids=["nothing set", "real secrets, sandbox processors"])
def test_serve_on_every_address_refuses_what_is_built_in_naming_each_setting(
    changes: dict[str, str], named: list[str]
) -> None:
    started = _serve("0.0.0.0", _env(**changes))
    assert started.returncode == 2, started.stderr
    [line] = started.stderr.splitlines()
    assert line.startswith(f"configuration error: set {', '.join(named)}: serving on 0.0.0.0 "), line
    assert "DEVELOPMENT=true" in line and "Traceback" not in started.stderr
    assert not any(name in line for name in set(EVERY) - set(named)), line
    assert SECRETS["JWT_SECRET"] not in line


def test_the_app_factory_under_another_server_refuses_them_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn --factory or gunicorn: the address is not known, so it is not taken as loopback."""
    for name in ("DEVELOPMENT", SERVE_HOST, *EVERY):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stopped:
        server_app.factory()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"configuration error: set {', '.join(EVERY)}: serving on an address not known to be "
                          "loopback"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_a_loopback_only_bind_is_development(host: str) -> None:
    refuse_unsafe(Settings(), host)  # make run: nothing set, served on 127.0.0.1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "192.168.1.20", "api.example.com", None])
def test_any_other_address_is_not_unless_development_is_explicit(host: str | None) -> None:
    with pytest.raises(SettingsError, match="set JWT_SECRET, BANK_WEBHOOK_SECRET, FILES_SIGNING_KEY, PAYMENT_GATEWAY, BANK_GATEWAY"):
        refuse_unsafe(Settings(), host)
    refuse_unsafe(Settings.from_env({"DEVELOPMENT": "true"}), host)
