"""Shell completion as bash does it: the hook `towline completion bash` prints, sourced in
a real bash, asked what it offers after a command line (as pressing Tab would)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.devserver import free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed"),
]

BIN = str(Path(sys.executable).parent)
# Source the hook, set what bash sets when Tab is pressed at the end of LINE, call the
# completion function and print what it offers, one a line.
_TAB = r"""
source <(towline completion bash)
line="$1"
COMP_LINE="$line"; COMP_POINT=${#line}
read -ra COMP_WORDS <<< "$line"
if [[ "$line" == *" " ]]; then COMP_WORDS+=(""); fi
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
fn=$(complete -p towline | sed -E 's/.* -F ([^ ]+) .*/\1/')
"$fn" towline "${COMP_WORDS[$COMP_CWORD]}" "${COMP_WORDS[$COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


async def tab(line: str) -> list[str]:
    """What bash offers after ``line``."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", _TAB, "tab", line, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return sorted(w.strip() for w in out.decode().splitlines() if w.strip())


async def test_commands_options_and_verbs_complete_without_a_server() -> None:
    assert await tab("towline sta") == ["stats", "status"]
    assert await tab("towline status --js") == ["--json"]
    assert "--address" in await tab("towline status -")
    assert await tab("towline schedule de") == ["delete"]
    assert await tab("towline completion ") == ["bash", "fish", "tcsh", "zsh"]


async def test_run_ids_come_from_the_server_and_task_ids_from_the_run(
    client: Client, task_queue: str, dev_server: str, tmp_path: Path
) -> None:
    name = f"tab-{secrets.token_hex(3)}"
    spec = check_data(
        plan(
            ws(
                "prod",
                echo("check"),
                echo("deploy", needs=["check"], approval={"required": True}),
                echo("announce", needs=["deploy"]),
            ),
            name=name,
        )
    )
    rids = [
        await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
        for _ in range(2)
    ]
    for _ in range(200):  # until the approval waits (a task is listed once it is reached)
        prod = (await api.get_status(client, rids[0])).workstreams.get("prod")
        deploy = prod.tasks.get("deploy") if prod is not None else None
        if deploy is not None and deploy.status == "waiting":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{rids[0]}: deploy never waited for its approval")
    at = f"--address {dev_server}"

    assert await tab(f"towline status {at} {name}") == sorted(rids)
    assert await tab(f"towline approve {at} {rids[0][:-2]}") == [rids[0]]
    # An answer offers the tasks waiting for it; logs offers every task.
    assert await tab(f"towline approve {at} {rids[0]} ") == ["prod.deploy"]
    assert await tab(f"towline retry {at} {rids[0]} p") == []
    assert await tab(f"towline logs {at} {rids[0]} prod.") == [
        "prod.announce",
        "prod.check",
        "prod.deploy",
    ]
    for rid in rids:
        await api.cancel_run(client, rid)


async def test_a_server_out_of_reach_completes_nothing_and_says_nothing(tmp_path: Path) -> None:
    line = f"towline status --address 127.0.0.1:{free_port()} r"
    assert await tab(line) == []

    # Asked directly, with stderr not thrown away as the hook does: still silent.
    answer = tmp_path / "completions"
    proc = await asyncio.create_subprocess_exec(
        f"{BIN}/towline",
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert answer.read_text() == ""
