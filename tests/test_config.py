"""gateway/config.py: flags over environment over defaults, fail-fast messages, masked secrets."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import (
    DEFAULT_ALLOWED_PATHS,
    MASK,
    SPECS,
    Secret,
    Settings,
    add_arguments,
    load_settings,
)
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SEED = "a-dev-seed-long-enough"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings(parse("--dev"), {})
    assert settings.port == 8080
    assert settings.metrics_port == 9090
    assert settings.max_body_bytes == 27_262_976
    assert settings.upstream_read_timeout == 600
    assert settings.upstream_connect_timeout == 5
    assert settings.allowed_paths == DEFAULT_ALLOWED_PATHS
    assert settings.body_idle_timeout == 30
    assert settings.body_min_rate == 100
    assert settings.body_rate_grace == 30
    assert settings.key_agreement == "process"


def test_every_setting_is_in_docs_configuration() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for spec in SPECS:
        assert f"`{spec.flag}" in doc, spec.flag
        assert f"`{spec.env}`" in doc, spec.env


def test_flag_wins_over_environment_over_default() -> None:
    env = {"OHTTP_GATEWAY_PORT": "9000", "OHTTP_GATEWAY_DEV": "true", "OHTTP_GATEWAY_WORKERS": "3"}
    settings = load_settings(parse("--port", "7000"), env)
    assert settings.port == 7000
    assert settings.workers == 3
    assert settings.dev is True


def test_repeatable_and_comma_separated_paths() -> None:
    flags = load_settings(
        parse("--dev", "--allowed-path", "/a", "--allowed-path", "/b/{name}/c"), {}
    )
    assert flags.allowed_paths == ("/a", "/b/{name}/c")
    env = load_settings(parse("--dev"), {"OHTTP_GATEWAY_ALLOWED_PATHS": "/x, /y"})
    assert env.allowed_paths == ("/x", "/y")


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (("--dev", "--port", "70000"), {}, "--port"),
        (("--dev", "--port", "eighty"), {}, "--port"),
        (("--dev",), {"OHTTP_GATEWAY_PORT": "-1"}, "OHTTP_GATEWAY_PORT"),
        (("--dev", "--upstream", "ftp://x"), {}, "--upstream"),
        (("--dev", "--upstream", "http://u:p@x"), {}, "--upstream"),
        (("--dev", "--upstream", "http://x/path"), {}, "--upstream"),
        (("--dev", "--allowed-path", "relative"), {}, "--allowed-path"),
        (("--dev", "--allowed-path", "/a/{other}"), {}, "--allowed-path"),
        (("--dev", "--upstream-read-timeout", "nan"), {}, "--upstream-read-timeout"),
        (("--dev", "--max-body-bytes", "12"), {}, "--max-body-bytes"),
        (("--dev", "--log-level", "loud"), {}, "--log-level"),
        ((), {"OHTTP_GATEWAY_DEV": "maybe"}, "OHTTP_GATEWAY_DEV"),
        (("--dev", "--dev-seed", "short"), {}, "--dev-seed"),
        (("--dev-seed", SEED), {}, "--dev-seed"),
        (("--kms-backend", "dev"), {}, "--kms-backend"),
        ((), {}, "--maa-url"),
        (("--maa-url", "https://maa.example", "--kms-backend", "ccf"), {}, "--ccf-url"),
        (("--dev", "--metrics-port", "8080"), {}, "--metrics-port"),
        (("--dev", "--ca-bundle", "/nonexistent/ca.pem"), {}, "--ca-bundle"),
        (("--dev", "--body-idle-timeout", "0"), {}, "--body-idle-timeout"),
        (("--dev", "--body-idle-timeout", "nan"), {}, "--body-idle-timeout"),
        (("--dev", "--body-idle-timeout", "3601"), {}, "--body-idle-timeout"),
        (("--dev",), {"OHTTP_GATEWAY_BODY_MIN_RATE": "-5"}, "OHTTP_GATEWAY_BODY_MIN_RATE"),
        (("--dev", "--body-min-rate", "1.5"), {}, "--body-min-rate"),
        (("--dev", "--body-rate-grace", "0.5"), {}, "--body-rate-grace"),
        (("--dev", "--key-agreement", "gpu"), {}, "--key-agreement"),
        (("--dev",), {"OHTTP_GATEWAY_KEY_AGREEMENT": ""}, "OHTTP_GATEWAY_KEY_AGREEMENT"),
    ],
)
def test_bad_values_fail_with_the_setting_named(
    argv: tuple[str, ...], env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(parse(*argv), env)
    assert caught.value.message.startswith(names + ":")


def test_body_deadline_from_flags_and_environment() -> None:
    env = {"OHTTP_GATEWAY_BODY_IDLE_TIMEOUT": "0.3", "OHTTP_GATEWAY_BODY_MIN_RATE": "0"}
    settings = load_settings(parse("--dev", "--body-rate-grace", "5"), env)
    assert settings.body_idle_timeout == 0.3
    assert settings.body_min_rate == 0  # the idle gap only
    assert settings.body_rate_grace == 5


def test_key_agreement_place_from_flag_or_environment() -> None:
    assert load_settings(parse("--dev", "--key-agreement", "thread"), {}).key_agreement == "thread"
    env = {"OHTTP_GATEWAY_KEY_AGREEMENT": "thread"}
    assert load_settings(parse("--dev"), env).key_agreement == "thread"


def test_bad_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(parse("--dev", "--dev-seed", "tiny-secret"), {})
    assert "tiny-secret" not in caught.value.message


def test_secrets_are_masked_everywhere() -> None:
    settings = load_settings(parse("--dev", "--dev-seed", SEED), {})
    assert isinstance(settings.dev_seed, Secret)
    assert settings.dev_seed.reveal() == SEED
    assert SEED not in repr(settings)
    assert SEED not in str(settings.dev_seed)
    assert settings.masked()["dev_seed"] == MASK


def test_production_settings_are_accepted() -> None:
    argv = ("--maa-url", "https://maa.example", "--akv-vault-url", "https://kv.example")
    settings = load_settings(parse(*argv, "--akv-key-name", "ohttp"), {})
    assert settings.dev is False
    assert isinstance(settings, Settings)


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_check_config_prints_masked_settings() -> None:
    done = run_cli("check-config", "--dev", env={"OHTTP_GATEWAY_DEV_SEED": SEED})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["dev_seed"] == MASK
    assert shown["body_idle_timeout"] == 30
    assert shown["body_min_rate"] == 100
    assert shown["confidential"] is False
    assert SEED not in done.stdout + done.stderr


def test_check_config_rejects_with_one_line() -> None:
    done = run_cli("check-config", "--dev", "--port", "99999")
    assert done.returncode == 2
    assert re.fullmatch(r"ohttp-gateway check-config: --port: .+\n", done.stderr)


def test_serve_fails_fast_on_bad_config() -> None:
    done = run_cli("serve", "--upstream", "nope")
    assert done.returncode == 2
    assert "--upstream" in done.stderr
