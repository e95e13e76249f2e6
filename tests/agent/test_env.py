"""``gossipreg agent`` reads the ``GOSSIPREG_*`` variables: flags > environment > config file > defaults.

The variables the default registry reads are read the same way (and bad
values get the same messages); the agent's own cover every other flag. Every
error names the variable it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gossipreg.agent.settings import (
    ENVIRONMENT,
    FLAGS,
    AgentSettings,
    layered,
    load_config_file,
    load_environment,
    prepare,
)
from gossipreg.cli.agent import agent, build_settings
from gossipreg.cli.main import cli
from gossipreg.core.crypto import Keyring
from gossipreg.core.errors import ConfigError
from gossipreg.default import _options as default_options

from .helpers import KEY1, KEY1_B64, KEY2, KEY2_B64, settings, write_keyring


@pytest.fixture(autouse=True)
def no_inherited_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``GOSSIPREG_*`` variable from outside but the test's state directory."""
    for var in list(os.environ):
        if var.startswith("GOSSIPREG_") and var != "GOSSIPREG_STATE_DIR":
            monkeypatch.delenv(var)
    return


def settings_of(args: list[str]) -> AgentSettings:
    """What ``gossipreg agent ARGS`` would run with, in the current environment."""
    ctx = agent.make_context("agent", list(args))
    return build_settings(ctx, ctx.params)


def test_every_flag_has_a_variable_and_the_default_registrys_are_among_them() -> None:
    assert set(ENVIRONMENT) == set(FLAGS)
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)
    library = {"GOSSIPREG_BIND", "GOSSIPREG_ADVERTISE", "GOSSIPREG_SEEDS", "GOSSIPREG_NAME",
               "GOSSIPREG_KEYRING", "GOSSIPREG_KEYRING_FILE", "GOSSIPREG_TLS_CA", "GOSSIPREG_TLS_CERT",
               "GOSSIPREG_TLS_KEY", "GOSSIPREG_INSECURE", "GOSSIPREG_RETRY_JOIN"}
    assert library <= set(ENVIRONMENT.values())
    help_text = CliRunner().invoke(cli, ["agent", "--help"]).output
    for var in [*ENVIRONMENT.values(), "GOSSIPREG_CONFIG"]:
        assert var in help_text, var


def test_the_variables_set_every_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = write_keyring(tmp_path / "keyring", KEY1)
    env = {
        "GOSSIPREG_BIND": "0.0.0.0:7950",
        "GOSSIPREG_ADVERTISE": "10.0.0.7",
        "GOSSIPREG_SEEDS": "a.internal, b.internal:7000,,",
        "GOSSIPREG_NAME": "env-agent",
        "GOSSIPREG_KEYRING_FILE": str(ring),
        "GOSSIPREG_TLS_CA": "ca.pem",
        "GOSSIPREG_TLS_CERT": "m.pem",
        "GOSSIPREG_TLS_KEY": "m-key.pem",
        "GOSSIPREG_INSECURE": "no",
        "GOSSIPREG_RETRY_JOIN": "yes",
        "GOSSIPREG_IDENTITIES": "true",
        "GOSSIPREG_PROFILE": "wan",
        "GOSSIPREG_HTTP": "0.0.0.0:8950",
        "GOSSIPREG_HTTP_TOKEN": "t0ken",
        "GOSSIPREG_HTTP_TOKEN_FILE": "/run/token",
        "GOSSIPREG_SERVICE_FILES": "web.json,admin.json",
        "GOSSIPREG_SERVICE_TTL": "12.5",
        "GOSSIPREG_JOIN_TIMEOUT": "3",
        "GOSSIPREG_LOG_JSON": "1",
        "GOSSIPREG_LOG_LEVEL": "debug",
    }
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    s = settings_of([])
    assert (s.bind, s.advertise, s.join, s.name) == ("0.0.0.0:7950", "10.0.0.7",
                                                      ("a.internal", "b.internal:7000"), "env-agent")
    assert (s.keyring_file, s.tls_ca, s.tls_cert, s.tls_key) == (ring, Path("ca.pem"), Path("m.pem"),
                                                                 Path("m-key.pem"))
    assert (s.insecure, s.retry_join, s.identities, s.log_json) == (False, True, True, True)
    assert (s.profile, s.http, s.http_token, s.http_token_file) == ("wan", "0.0.0.0:8950", "t0ken",
                                                                    Path("/run/token"))
    assert s.services == (Path("web.json"), Path("admin.json"))
    assert (s.service_ttl, s.join_timeout, s.log_level) == (12.5, 3.0, "debug")
    assert s.origins["bind"] == "GOSSIPREG_BIND"


def test_flags_beat_variables_which_beat_the_file_which_beats_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text('bind = "127.0.0.1:1001"\nname = "from-file"\nhttp = "127.0.0.1:3001"\n'
                    'join = ["file-seed"]\nretry_join = true\nservice_ttl = 5\n')
    monkeypatch.setenv("GOSSIPREG_CONFIG", str(conf))  # the file itself, by its variable
    monkeypatch.setenv("GOSSIPREG_BIND", "127.0.0.1:1002")
    monkeypatch.setenv("GOSSIPREG_NAME", "from-env")
    monkeypatch.setenv("GOSSIPREG_SEEDS", "env-seed")
    monkeypatch.setenv("GOSSIPREG_RETRY_JOIN", "0")
    s = settings_of(["--bind", "127.0.0.1:1003", "--join", "flag-seed"])
    assert s.bind == "127.0.0.1:1003"  # flag > environment > file
    assert s.name == "from-env"  # environment > file
    assert s.join == ("flag-seed",)
    assert s.retry_join is False  # GOSSIPREG_RETRY_JOIN=0 switches the file's retry_join off
    assert s.http == "127.0.0.1:3001"  # file > default
    assert s.service_ttl == 5.0
    assert s.log_level == "info"  # the default
    assert s.origins.get("bind") is None
    assert s.origins["name"] == "GOSSIPREG_NAME"
    assert settings_of(["--retry-join"]).retry_join is True


def test_a_keyring_given_higher_up_replaces_the_other_form_below(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = write_keyring(tmp_path / "keyring", KEY2)
    monkeypatch.setenv("GOSSIPREG_KEYRING", f"{KEY1_B64},{KEY2_B64}")
    from_env = prepare(settings_of(["--http-token", "t0ken"]))
    assert from_env.keyring is not None
    assert from_env.keyring.keys == Keyring.from_base64([KEY1_B64, KEY2_B64]).keys  # first is primary
    assert from_env.settings.keyring_file is None  # changes through the API are not persisted
    from_flag = prepare(settings_of(["--http-token", "t0ken", "--keyring-file", str(ring)]))
    assert from_flag.keyring is not None
    assert from_flag.keyring.keys == (KEY2,)
    assert from_flag.settings.keyring == ()
    # A file's keyring_file gives way to the environment's keys.
    conf = tmp_path / "a.toml"
    conf.write_text(f'keyring_file = "{ring}"\nhttp_token = "t0ken"\n')
    s = layered(load_config_file(conf), load_environment())
    assert s.keyring_file is None
    assert prepare(s).keyring is not None
    assert prepare(s).keyring.keys[0] == KEY1  # type: ignore[union-attr]


def test_the_environment_is_read_like_the_default_registrys(tmp_path: Path) -> None:
    """The shared variables give the default registry and the agent the same member."""
    ring = write_keyring(tmp_path / "keyring", KEY1)
    env = {"GOSSIPREG_BIND": "127.0.0.1:7999", "GOSSIPREG_ADVERTISE": "10.1.2.3:7999",
           "GOSSIPREG_SEEDS": "s1.internal,s2.internal:7000", "GOSSIPREG_NAME": "same",
           "GOSSIPREG_KEYRING_FILE": str(ring), "GOSSIPREG_RETRY_JOIN": "on"}
    lib = default_options(env)
    prepared = prepare(layered({}, load_environment(env), {"http_token": "t0ken"}))
    s = prepared.settings
    assert (s.bind, s.advertise, list(s.join), s.name, s.retry_join) == (
        lib.bind, lib.advertise, lib.seeds, lib.name, lib.retry_join)
    assert prepared.keyring is not None
    assert lib.keyring is not None
    assert prepared.keyring.keys == lib.keyring.keys


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOSSIPREG_BIND": "nowhere"}, "GOSSIPREG_BIND: 'nowhere': missing :port"),
        ({"GOSSIPREG_ADVERTISE": "h:99999"}, "GOSSIPREG_ADVERTISE: "),
        ({"GOSSIPREG_SEEDS": "ok.internal,bad:port"}, "GOSSIPREG_SEEDS: "),
        ({"GOSSIPREG_SEEDS": " , "}, "GOSSIPREG_SEEDS: lists nothing"),
        ({"GOSSIPREG_NAME": "a\x07b"}, "GOSSIPREG_NAME: "),
        ({"GOSSIPREG_INSECURE": "maybe"},
         "GOSSIPREG_INSECURE: expected 1/true/yes or 0/false/no, not 'maybe'"),
        ({"GOSSIPREG_RETRY_JOIN": "2"}, "GOSSIPREG_RETRY_JOIN: expected 1/true/yes"),
        ({"GOSSIPREG_LOG_JSON": "y"}, "GOSSIPREG_LOG_JSON: expected"),
        ({"GOSSIPREG_KEYRING": "bm9wZQ=="}, "GOSSIPREG_KEYRING: "),
        ({"GOSSIPREG_KEYRING": KEY1_B64, "GOSSIPREG_KEYRING_FILE": "k"},
         "GOSSIPREG_KEYRING: set it or GOSSIPREG_KEYRING_FILE, not both"),
        ({"GOSSIPREG_TLS_CA": "ca.pem"},
         "GOSSIPREG_TLS_CERT, GOSSIPREG_TLS_KEY: the TLS variables go together"),
        ({"GOSSIPREG_SERVICE_TTL": "soon"}, "GOSSIPREG_SERVICE_TTL: must be a number of seconds, not 'soon'"),
        ({"GOSSIPREG_JOIN_TIMEOUT": "1s"}, "GOSSIPREG_JOIN_TIMEOUT: must be a number of seconds"),
    ],
)
def test_a_bad_variable_is_named_when_read(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_environment(env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOSSIPREG_PROFILE": "fast"}, "GOSSIPREG_PROFILE: must be one of lan, wan, local, not 'fast'"),
        ({"GOSSIPREG_LOG_LEVEL": "loud"}, "GOSSIPREG_LOG_LEVEL: must be one of"),
        ({"GOSSIPREG_HTTP": "127.0.0.1"}, "GOSSIPREG_HTTP: '127.0.0.1': missing :port"),
        ({"GOSSIPREG_HTTP_TOKEN": "two words"}, "GOSSIPREG_HTTP_TOKEN: must be non-empty printable ASCII"),
        ({"GOSSIPREG_SERVICE_TTL": "-1"}, "GOSSIPREG_SERVICE_TTL: must be a positive number of seconds"),
        ({"GOSSIPREG_JOIN_TIMEOUT": "nan"}, "GOSSIPREG_JOIN_TIMEOUT: must be a non-negative number"),
        ({"GOSSIPREG_SERVICE_FILES": "missing.json"},
         "GOSSIPREG_SERVICE_FILES 'missing.json': cannot be read"),
        ({"GOSSIPREG_IDENTITIES": "1"}, "GOSSIPREG_IDENTITIES: needs --tls-ca"),
        ({"GOSSIPREG_KEYRING_FILE": "missing-ring"}, "GOSSIPREG_KEYRING_FILE: keyring file 'missing-ring'"),
        ({"GOSSIPREG_INSECURE": "1", "GOSSIPREG_KEYRING": KEY1_B64},
         "GOSSIPREG_INSECURE: cannot be combined with GOSSIPREG_KEYRING"),
        ({"GOSSIPREG_TLS_CA": "ca.pem", "GOSSIPREG_TLS_CERT": "c.pem", "GOSSIPREG_TLS_KEY": "k.pem"},
         "GOSSIPREG_TLS_CA/GOSSIPREG_TLS_CERT/GOSSIPREG_TLS_KEY: "),
    ],
)
def test_a_bad_variable_is_named_when_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    base: dict[str, Any] = {"GOSSIPREG_HTTP_TOKEN": "t0ken"}
    if not {"GOSSIPREG_KEYRING", "GOSSIPREG_KEYRING_FILE"} & env.keys():
        base["GOSSIPREG_INSECURE"] = "1"
    with pytest.raises(ConfigError) as caught:
        prepare(layered({}, load_environment({**base, **env})))
    assert str(caught.value).startswith(message)


def test_the_command_reports_a_bad_variable_before_anything_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["agent", "--insecure"], env={"GOSSIPREG_BIND": "127.0.0.1:notaport"}, catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: GOSSIPREG_BIND: ")
    result = CliRunner().invoke(
        cli, ["agent"], env={"GOSSIPREG_KEYRING": KEY1_B64, "GOSSIPREG_INSECURE": "1"}, catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "Error: GOSSIPREG_INSECURE: cannot be combined with GOSSIPREG_KEYRING" in result.output


def test_blank_variables_are_unset() -> None:
    assert load_environment({var: "  " for var in ENVIRONMENT.values()}) == {}


def test_the_configuration_guide_lists_every_variable_with_its_flag() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    lines = [line for line in guide.splitlines() if line.startswith("| `GOSSIPREG_")]
    rows = {line.split("|")[1].strip(): line for line in lines}
    for fld, var in ENVIRONMENT.items():
        row = next((line for names, line in rows.items() if f"`{var}`" in names), None)
        assert row is not None, var
        if FLAGS[fld].startswith("--"):
            assert f"`{FLAGS[fld]}" in row, (var, FLAGS[fld])
    assert "`GOSSIPREG_CONFIG`" in rows


def test_an_srv_seed_is_accepted_by_the_flag_and_the_variable_and_checked() -> None:
    prepared = prepare(settings(join=("srv:_gossipreg._udp.example.internal",)))
    assert prepared.settings.join == ("srv:_gossipreg._udp.example.internal",)
    with pytest.raises(ConfigError, match=r"^--join: 'srv:two words': the SRV name"):
        prepare(settings(join=("srv:two words",)))
    env = load_environment({"GOSSIPREG_SEEDS": "srv:_g._udp.example.internal,10.0.0.1"})
    assert env["join"] == ("srv:_g._udp.example.internal", "10.0.0.1")
    with pytest.raises(ConfigError, match=r"^GOSSIPREG_SEEDS: 'srv:': the SRV name"):
        load_environment({"GOSSIPREG_SEEDS": "srv:"})
