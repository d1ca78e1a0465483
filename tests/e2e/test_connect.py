"""Connecting to a Temporal server with TLS, mTLS and API keys, through profiles.

The server is the session's dev server behind a real TLS-terminating gRPC proxy
(tests/fakes/tls.py) with certificates made for the test; the client is the ``towline``
command as a user runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.fakes.tls import Certs, Proxy, make_certs
from tests.helpers import echo, plan, ws
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(120)

TOWLINE = str(Path(sys.executable).parent / "towline")
API_KEY = "tk-3f1c9a"  # what the proxy asks for


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Servers:
    certs: Certs
    tls: Proxy
    mtls: Proxy
    keyed: Proxy


@pytest.fixture(scope="module")
def servers(dev_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "certs")
    started: list[Proxy] = []
    try:
        for kwargs in ({}, {"mtls": True}, {"api_key": API_KEY}):
            started.append(Proxy(dev_server, certs, log=folder / "proxy.log", **kwargs))
        yield Servers(certs, *started)
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A folder to run towline in, with no towline.toml and no temporal.toml but ours."""
    return tmp_path


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "TOWLINE_")) and k != "XDG_CONFIG_HOME"
    }
    env |= {
        "HOME": str(home),
        "TOWLINE_HOME": str(home / ".towline"),
        "TEMPORAL_CONFIG_FILE": str(home / "no-temporal.toml"),
    }
    return env | extra


async def towline(*args: str, home: Path, **env: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        TOWLINE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(home, **env),
        cwd=home,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def _profiles(home: Path, profiles: dict[str, dict[str, object]]) -> None:
    lines: list[str] = []
    for name, keys in profiles.items():
        tables = {k: v for k, v in keys.items() if isinstance(v, dict)}
        lines.append(f"[profiles.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items() if k not in tables]
        for table, values in tables.items():
            lines.append(f"[profiles.{name}.{table}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (home / "towline.toml").write_text("\n".join(lines) + "\n")


async def test_a_temporal_toml_profile_is_used_when_no_flag_says_otherwise(
    servers: Servers, home: Path
) -> None:
    # Temporal's own file, as the `temporal` CLI reads it: before, towline overwrote its
    # address with localhost:7233.
    (home / "temporal.toml").write_text(
        f'[profile.default]\naddress = "{servers.tls.address}"\n'
        f'[profile.default.tls]\nserver_ca_cert_path = "{servers.certs.ca}"\n'
    )
    env = {"TEMPORAL_CONFIG_FILE": str(home / "temporal.toml")}
    r = await towline("list", "--limit", "1", home=home, **env)
    assert r.code == 0, r.err
    shown = await towline("config", "show", "--json", home=home, **env)
    settings = json.loads(shown.out)
    assert settings["address"] == {"value": servers.tls.address, "from": "temporal.toml"}
    assert settings["tls"]["value"] == "on"


async def test_tls_with_the_servers_ca_connects_and_a_wrong_ca_exits_3(
    servers: Servers, home: Path
) -> None:
    _profiles(
        home,
        {
            "good": {
                "address": servers.tls.address,
                "tls": {"server_ca_cert": str(servers.certs.ca)},
            },
            "wrong": {
                "address": servers.tls.address,
                "tls": {"server_ca_cert": str(servers.certs.other_ca)},
            },
            "plain": {"address": servers.tls.address},
        },
    )
    ok = await towline("list", "--limit", "1", "--profile", "good", home=home)
    assert ok.code == 0, ok.err
    wrong = await towline("list", "--profile", "wrong", home=home)
    assert wrong.code == 3, wrong.err
    assert "not signed by a CA this client trusts" in wrong.err
    assert str(servers.certs.other_ca) in wrong.err
    assert "Traceback" not in wrong.err
    plain = await towline("list", "--profile", "plain", home=home)
    assert plain.code == 3
    assert servers.tls.address in plain.err


async def test_mtls_a_worker_and_a_run_go_through_and_no_client_certificate_exits_3(
    servers: Servers, home: Path
) -> None:
    tls = {"server_ca_cert": str(servers.certs.ca)}
    _profiles(
        home,
        {
            "mtls": {
                "address": servers.mtls.address,
                "task_queue": f"mtls-{free_port()}",
                "tls": tls
                | {"client_cert": str(servers.certs.client_cert), "client_key": "client.key"},
            },
            "nocert": {"address": servers.mtls.address, "tls": tls},
        },
    )
    # a relative path in the file is relative to the file's folder
    (home / "client.key").write_bytes(servers.certs.client_key.read_bytes())
    refused = await towline("list", "--profile", "nocert", home=home)
    assert refused.code == 3, refused.err
    assert "client certificate" in refused.err

    (home / "plan.yaml").write_text(yaml.safe_dump(plan(ws("w", echo("hello")), name="mtls")))
    with (home / "worker.log").open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            TOWLINE,
            *("worker", "--profile", "mtls", "--http-port", "0"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(home),
            cwd=home,
        )
        try:
            r = await towline(
                "run", "plan.yaml", "--wait", "--json", "--profile", "mtls", home=home
            )
            assert r.code == 0, (r.err, (home / "worker.log").read_text())
            assert json.loads(r.out)["status"] == "succeeded"
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), 20)


async def test_api_key_from_a_file_or_the_environment_and_a_wrong_or_missing_one_exits_3(
    servers: Servers, home: Path
) -> None:
    tls = {"server_ca_cert": str(servers.certs.ca)}
    (home / "right").write_text(API_KEY + "\n")
    (home / "wrong").write_text("tk-guess\n")
    _profiles(
        home,
        {
            "right": {"address": servers.keyed.address, "api_key_file": "right", "tls": tls},
            "wrong": {"address": servers.keyed.address, "api_key_file": "wrong", "tls": tls},
            "none": {"address": servers.keyed.address, "tls": tls},
            "gone": {"address": servers.keyed.address, "api_key_file": "gone", "tls": tls},
        },
    )
    assert (await towline("list", "--profile", "right", home=home)).code == 0
    wrong = await towline("list", "--profile", "wrong", home=home)
    assert wrong.code == 3
    assert "refused the credentials (the API key)" in wrong.err
    none = await towline("list", "--profile", "none", home=home)
    assert none.code == 3
    assert "no API key" in none.err
    # the environment wins over the profile's file
    env_wins = await towline("list", "--profile", "wrong", home=home, TEMPORAL_API_KEY=API_KEY)
    assert env_wins.code == 0, env_wins.err
    gone = await towline("list", "--profile", "gone", home=home)
    assert gone.code == 2
    assert "api_key_file (profiles.gone.api_key_file in" in gone.err
    assert str(home / "gone") in gone.err
    shown = await towline("config", "show", "--profile", "right", home=home)
    assert API_KEY not in shown.out
    assert "**** (set)" in shown.out


async def test_a_flag_or_a_variable_wins_over_the_profile_and_unset_flags_do_not(
    servers: Servers, home: Path
) -> None:
    _profiles(
        home,
        {
            "tls": {
                "address": servers.tls.address,
                "namespace": "default",
                "tls": {"server_ca_cert": str(servers.certs.ca)},
            }
        },
    )
    closed = f"127.0.0.1:{free_port()}"
    assert (await towline("list", home=home, TOWLINE_PROFILE="tls")).code == 0
    by_flag = await towline("list", "--address", closed, home=home, TOWLINE_PROFILE="tls")
    assert by_flag.code == 3
    assert closed in by_flag.err
    by_env = await towline("list", home=home, TOWLINE_PROFILE="tls", TEMPORAL_ADDRESS=closed)
    assert by_env.code == 3
    assert closed in by_env.err
