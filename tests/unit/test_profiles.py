"""Profiles (towline.toml) and how a connection is settled from every source."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline import profiles
from towline.config import ConfigError
from towline.history import without_password
from towline.worker.client import settle

CA = "-----BEGIN CERTIFICATE-----\n"  # the files' content is not read by these tests


@pytest.fixture(autouse=True)
def _leave_no_profile_active(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "_active", profiles.Activation())


def _file(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "towline.toml").write_text(text)
    return {"TOWLINE_CONFIG": str(tmp_path / "towline.toml"), "TEMPORAL_CONFIG_FILE": "/dev/null"}


def test_a_profile_sets_only_what_is_not_set_and_says_which(tmp_path: Path) -> None:
    env = _file(
        tmp_path,
        '[profiles.prod]\naddress = "prod:7233"\nnamespace = "p"\ntask_queue = "q"\n'
        '[profiles.prod.retention]\nworkspaces = "3d"\n',
    )
    env["TEMPORAL_NAMESPACE"] = "mine"
    done = profiles.activate("prod", env=env)
    assert env["TEMPORAL_ADDRESS"] == "prod:7233"
    assert env["TEMPORAL_NAMESPACE"] == "mine"  # the explicit variable wins
    assert env["TOWLINE_RETENTION_WORKSPACES"] == "3d"
    assert done.overridden == {"TEMPORAL_NAMESPACE": "p"}
    assert "TEMPORAL_ADDRESS" in done.applied
    assert env[profiles.PROFILE_ENV] == "prod"


def test_paths_are_read_from_the_files_folder_and_the_default_profile_applies(
    tmp_path: Path,
) -> None:
    env = _file(
        tmp_path,
        'default_profile = "d"\n[profiles.d]\napi_key_file = "secret/key"\n'
        '[profiles.d.tls]\nserver_ca_cert = "ca.pem"\n',
    )
    profiles.activate(None, env=env)
    assert env["TOWLINE_API_KEY_FILE"] == str(tmp_path.resolve() / "secret" / "key")
    assert env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] == str(tmp_path.resolve() / "ca.pem")
    assert "TEMPORAL_TLS" not in env  # the table alone turns TLS on through its paths


def test_the_profile_variable_selects_and_no_file_means_no_profile(tmp_path: Path) -> None:
    env = _file(tmp_path, '[profiles.a]\naddress = "a:1"\n[profiles.b]\naddress = "b:1"\n')
    env[profiles.PROFILE_ENV] = "b"
    assert profiles.activate(None, env=env).profile == "b"
    assert env["TEMPORAL_ADDRESS"] == "b:1"
    bare = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "none")}
    assert profiles.activate(None, env=bare).profile is None
    with pytest.raises(ConfigError, match=r"profile 'x' asked for, but there is no towline\.toml"):
        profiles.activate("x", env=bare)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[profiles.p]\nadress = "x"\n',
            "profiles.p.adress: unknown key (did you mean 'address'?)",
        ),
        (
            '[profiles.p.tls]\nclient_certificate = "x"\n',
            "profiles.p.tls.client_certificate: unknown key (did you mean 'client_cert'?)",
        ),
        (
            '[profiles.p.retention]\ncache = "a week"\n',
            "profiles.p.retention.cache: not a duration",
        ),
        ('[profiles.p.retention]\ndaily_at = "25:00"\n', "profiles.p.retention.daily_at: '25:00'"),
        ('[profiles.p]\nlog_format = "xml"\n', "profiles.p.log_format: 'xml' is not a log format"),
        ('[profiles.p]\napi_key = "k"\n', "profiles.p.api_key: an API key never goes in the file"),
        ("[profiles.p\n", "not valid TOML"),
        ('[profiles.q]\naddress = "x"\n', "no profile 'p' (profiles: q)"),
    ],
)
def test_a_bad_profile_is_named_by_its_key(tmp_path: Path, text: str, message: str) -> None:
    env = _file(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        profiles.activate("p", env=env)
    assert message in str(e.value)
    assert str(tmp_path / "towline.toml") in str(e.value)


def test_temporal_toml_is_below_variables_and_flags(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CA)
    (tmp_path / "temporal.toml").write_text(
        '[profile.default]\naddress = "cloud:7233"\nnamespace = "ns.acct"\n'
        f'[profile.default.tls]\nserver_ca_cert_path = "{tmp_path / "ca.pem"}"\n'
    )
    env = {"TEMPORAL_CONFIG_FILE": str(tmp_path / "temporal.toml")}
    conn = settle(env=env)
    assert (conn.address, conn.namespace) == ("cloud:7233", "ns.acct")
    assert conn.tls is not False
    assert settle("flag:1", env=env).address == "flag:1"
    assert settle(env=env | {"TEMPORAL_ADDRESS": "env:1"}).address == "env:1"
    plain = settle("local:1", env=env, plain=True)
    assert (plain.tls, plain.api_key) == (False, None)


def test_api_key_from_the_environment_wins_over_the_file_and_implies_tls(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file\n")
    env = {"TEMPORAL_CONFIG_FILE": "/dev/null", "TOWLINE_API_KEY_FILE": str(tmp_path / "key")}
    conn = settle("x:1", env=env)
    assert (conn.api_key, conn.tls) == ("from-file", True)
    assert settle("x:1", env=env | {"TEMPORAL_API_KEY": "from-env"}).api_key == "from-env"
    (tmp_path / "key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        settle("x:1", env=env)


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text(CA)
    base = {"TEMPORAL_CONFIG_FILE": "/dev/null"}
    with pytest.raises(
        ConfigError, match=r"tls.server_ca_cert \(TEMPORAL_TLS_SERVER_CA_CERT_PATH\)"
    ):
        settle("x:1", env=base | {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "no.pem")})
    with pytest.raises(ConfigError, match=r"tls\.client_cert is set but tls\.client_key is not"):
        settle("x:1", env=base | {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "cert.pem")})


def test_passwords_in_connection_strings_are_masked() -> None:
    assert without_password("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert without_password("/var/lib/towline/history.db") == "/var/lib/towline/history.db"
