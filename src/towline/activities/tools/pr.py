"""``pr``: push the workspace's branch and open or update its pull request; close it; or
open an issue. On GitHub, GitLab (merge requests) and Gitea or Forgejo.

``action: open`` (the default) pushes the workspace's HEAD to ``branch`` (by default
``towline/<run id>/<workstream>``) and opens a pull request from it into ``base``, or,
when one is already open for that branch, updates its title and body: the branch is the
pull request's identity, so a retry (or a second run of the task) never opens a second.
Labels are added and reviewers requested on every call (both are idempotent on the
forges).

``wait: merged | checks_passed | closed`` makes the task last until that happens, for
days if need be, without holding a worker: when it has not happened yet, the call ends
with a ``not_yet`` error, and Temporal calls the tool again after ``poll_interval``,
doubling up to ``max_poll_interval``, until ``wait_timeout``
(:mod:`towline.workflows.polling` sets that retry policy). A retried activity costs no
history events, so a week of polls leaves the same few events as one call; a later
poll skips the push and the update and only reads the pull request. A pull request
closed unmerged while waiting for ``merged`` fails the task (``conflict``), and so do
failed checks while waiting for ``checks_passed`` (``test_failed``).

``action: close`` closes the branch's open pull request (or ``number``) and deletes the
branch from the remote: the rollback of ``open``. ``action: issue`` opens an issue
marked with the run's id, once per run and repository: a call that finds an issue with
the run's mark among the repository's newest returns that one. As the ``rollback:`` of a
workstream's first task it opens an issue when the workstream fails.

The token (``${{ secrets.GITHUB_TOKEN }}``) authenticates the API calls and, for an
HTTPS remote, the push (as an ``http.extraHeader`` in git's environment, never on its
command line); it never reaches outputs, logs or history.
"""

from __future__ import annotations

import asyncio
import base64
import re
import weakref
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from towline.activities import repo as git_repo
from towline.activities.base import ToolInput, report_progress, run_page, tool
from towline.activities.forges import (
    DEFAULT_API,
    TOKEN_USER,
    Forge,
    ForgeKind,
    Issue,
    PullRequest,
    open_forge,
)
from towline.activities.tools.http import http_url
from towline.errors import NOT_YET, ToolError
from towline.plan.spec import Duration
from towline.toolcall import ToolContext

Action = Literal["open", "close", "issue"]
Wait = Literal["merged", "checks_passed", "closed"]

DEFAULT_POLL = timedelta(minutes=1)
DEFAULT_MAX_POLL = timedelta(minutes=15)
DEFAULT_WAIT_TIMEOUT = timedelta(days=7)
_REPO = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
_MARK = "<!-- towline run: {run_id} -->"

# The keys each action takes, beyond the forge's (action, forge, api_url, repo, token).
_KEYS: dict[str, set[str]] = {
    "open": {
        "branch",
        "base",
        "remote",
        "push",
        "force",
        "title",
        "body",
        "labels",
        "reviewers",
        "draft",
        "wait",
        "poll_interval",
        "max_poll_interval",
        "wait_timeout",
    },
    "close": {"branch", "number", "remote", "delete_branch"},
    "issue": {"title", "body", "labels"},
}
_COMMON = {"action", "forge", "api_url", "repo", "token"}


class PrInput(ToolInput):
    """A pull request (or an issue) on a forge; each action takes only its own keys."""

    action: Action = Field(
        "open", description="open (or update), close (and delete the branch), or issue"
    )
    forge: ForgeKind = Field("github", description="github, gitlab or gitea (Gitea, Forgejo)")
    api_url: str | None = Field(
        None,
        description="the forge's API root; default https://api.github.com for github, "
        "https://gitlab.com/api/v4 for gitlab; required for gitea (https://HOST/api/v1)",
    )
    repo: str = Field(description="the repository: owner/name (GitLab: group/.../name)")
    token: str | None = Field(
        None, description="an API token, e.g. ${{ secrets.GITHUB_TOKEN }}; also used to push"
    )
    branch: str | None = Field(
        None,
        min_length=1,
        description="open, close: the pull request's branch (default towline/<run id>/"
        "<workstream>)",
    )
    base: str | None = Field(
        None, min_length=1, description="open: the branch to merge into (default: the repo's)"
    )
    remote: str = Field(
        "origin",
        min_length=1,
        description="open, close: the git remote (name or URL) the branch is pushed to",
    )
    push: bool = Field(True, description="open: push the workspace's HEAD to the branch first")
    force: bool = Field(False, description="open: push with --force")
    title: str | None = Field(
        None,
        min_length=1,
        description="open: the title (default: the plan's name and the run id); issue: required",
    )
    body: str | None = Field(
        None, description="open, issue: the description (default: the run, with its links)"
    )
    labels: list[str] = Field(default_factory=list, description="open, issue: labels to add")
    reviewers: list[str] = Field(
        default_factory=list, description="open: user names asked to review"
    )
    draft: bool = Field(False, description="open: open it as a draft")
    wait: Wait | None = Field(
        None,
        description="open: then wait (durably, by polling) until the pull request is "
        "merged, its checks passed, or it is closed",
    )
    poll_interval: Duration = Field(DEFAULT_POLL, description="wait: the first poll's delay")
    max_poll_interval: Duration = Field(
        DEFAULT_MAX_POLL, description="wait: the delay doubles up to this"
    )
    wait_timeout: Duration = Field(
        DEFAULT_WAIT_TIMEOUT, description="wait: give up (category timeout) after this long"
    )
    number: int | None = Field(
        None, ge=1, description="close: the pull request's number (default: the branch's)"
    )
    delete_branch: bool = Field(True, description="close: also delete the branch on the remote")

    @field_validator("repo")
    @classmethod
    def _repo(cls, repo: str) -> str:
        if not _REPO.match(repo):
            raise ValueError(f"'{repo}' is not owner/name")
        return repo

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str | None) -> str | None:
        return None if url is None else http_url(url, example="https://api.github.com")

    @model_validator(mode="after")
    def _keys_fit_the_action(self) -> PrInput:
        for key in sorted(self.model_fields_set - _COMMON - _KEYS[self.action]):
            owners = [a for a, keys in _KEYS.items() if key in keys]
            raise PydanticCustomError(
                "pr_key",
                "'{key}' goes with action {owner}, not {action}",
                {"key": key, "owner": " or ".join(owners), "action": self.action},
            )
        if self.action == "issue" and self.title is None:
            raise PydanticCustomError("pr_key", "action issue needs a title")
        if self.forge == "gitea" and self.api_url is None:
            raise PydanticCustomError(
                "pr_key", "forge gitea needs api_url, e.g. https://gitea.example.com/api/v1"
            )
        for key in ("branch", "base", "remote"):
            value = getattr(self, key)
            if isinstance(value, str) and value.startswith("-"):
                raise PydanticCustomError(
                    "pr_key", "{key} may not start with '-': {value}", {"key": key, "value": value}
                )
        return self


@tool("pr", PrInput, "Open or update a pull request (and wait for it), close it, or open an issue.")
async def pr(args: PrInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs. open: ``number``, ``url``, ``state`` (open, closed or merged),
    ``branch``, ``base``, ``sha``, ``draft``, ``created`` (false when it was already
    open), ``checks`` (passed, pending or failed; with ``wait: checks_passed``). close:
    the same without ``created``, and ``branch_deleted``. issue: ``number``, ``url``,
    ``created``."""
    api_url = args.api_url or DEFAULT_API[args.forge]
    async with open_forge(args.forge, api_url, args.repo, args.token) as forge:
        if args.action == "issue":
            return await _issue(forge, args, ctx)
        workspace = Path(ctx.workspace).resolve()
        branch = args.branch or default_branch(ctx)
        if args.action == "close":
            return await _close(forge, args, workspace, branch)
        return await _open(forge, args, ctx, workspace, branch)


def default_branch(ctx: ToolContext) -> str:
    """``towline/<run id>/<workstream>``, with what git refuses in a branch name replaced."""
    name = f"towline/{ctx.run_id}/{ctx.workstream}"
    return re.sub(r"[^A-Za-z0-9._/-]+", "-", name).replace("..", ".")


async def _open(
    forge: Forge, args: PrInput, ctx: ToolContext, workspace: Path, branch: str
) -> dict[str, Any]:
    known = _known_number()
    created = False
    if known is not None:
        # An earlier poll of this task opened it: only look at it again.
        found = await forge.get(known)
    else:
        if args.push:
            await _push(workspace, args, branch)
        title = args.title or f"{ctx.plan or 'towline'}: run {ctx.run_id}"
        body = args.body if args.body is not None else _default_body(ctx)
        existing = await forge.find_open(branch)
        if existing is None:
            base = args.base or await forge.default_branch()
            found = await forge.create(
                head=branch, base=base, title=title, body=body, draft=args.draft
            )
            created = True
        else:
            found = await forge.update(existing, title=title, body=body, draft=args.draft)
        if args.labels:
            await forge.add_labels(found, args.labels)
        if args.reviewers:
            await forge.request_reviewers(found, args.reviewers)
        _remember(found.number)
    outputs = {**found.outputs(), "created": created}
    if args.wait is not None:
        outputs.update(await _check_wait(forge, found, args.wait))
    return outputs


async def _check_wait(forge: Forge, found: PullRequest, wait: str) -> dict[str, Any]:
    """Return when ``wait`` has happened; else raise ``not_yet`` (polled again) or fail."""
    ref = f"pull request {found.url}"
    if wait == "closed":
        if found.state != "open":
            return {}
        raise _not_yet(f"{ref} is open; waiting until it is closed")
    if wait == "merged":
        if found.state == "merged":
            return {}
        if found.state == "closed":
            raise ToolError(
                "conflict",
                f"{ref} was closed without being merged",
                hint="reopen it and retry the task, or change the plan",
            )
        raise _not_yet(f"{ref} is open; waiting until it is merged")
    verdict, names = await forge.checks(found)
    if verdict == "passed":
        return {"checks": "passed"}
    if verdict == "failed":
        raise ToolError(
            "test_failed",
            f"checks failed on {ref}: {', '.join(names)}",
            hint="fix the change and push again; then retry the task",
            outputs={**found.outputs(), "checks": "failed", "failing": names},
        )
    if found.state != "open":
        raise ToolError("conflict", f"{ref} is {found.state}; its checks will not pass now")
    pending = f" ({', '.join(names)})" if names else " (none reported yet)"
    raise _not_yet(f"checks of {ref} are pending{pending}")


def _not_yet(message: str) -> ApplicationError:
    """Retried by the task's polling policy (workflows/polling.py), after its interval."""
    return ApplicationError(
        message, type=NOT_YET, non_retryable=False, category=ApplicationErrorCategory.BENIGN
    )


def _known_number() -> int | None:
    """The pull request an earlier attempt of this call opened (its last heartbeat)."""
    for details in activity.info().heartbeat_details:
        if isinstance(details, dict) and isinstance(details.get("pr"), int):
            return int(details["pr"])
    return None


def _remember(number: int) -> None:
    """Heartbeat the pull request's number now, so the next poll finds it there."""
    report_progress({"pr": number})
    activity.heartbeat({"pr": number})


async def _close(forge: Forge, args: PrInput, workspace: Path, branch: str) -> dict[str, Any]:
    found = await forge.get(args.number) if args.number else await forge.find_open(branch)
    outputs: dict[str, Any] = {"branch": branch, "state": "closed", "branch_deleted": False}
    if found is not None:
        if found.state == "open":
            found = await forge.close(found)
        outputs.update(found.outputs())
        branch = found.head
    if args.delete_branch:
        outputs["branch_deleted"] = await _delete_branch(workspace, args, branch)
    return outputs


async def _issue(forge: Forge, args: PrInput, ctx: ToolContext) -> dict[str, Any]:
    """One issue per run and repository: found by the run's mark, else opened.

    Calls on one worker take turns, so a second finds the first's issue. Calls on two
    workers may both open one (the forges take no idempotency key); each then keeps the
    oldest marked issue and closes its own if it is not that one.
    """
    mark = _MARK.format(run_id=ctx.run_id)
    key = f"{forge.base_url} {args.repo} {mark}"
    lock = _issue_locks.get(key) or _issue_locks.setdefault(key, asyncio.Lock())
    async with lock:
        found = await _marked(forge, mark)
        if found:
            return {"number": found[0].number, "url": found[0].url, "created": False}
        assert args.title is not None
        body = args.body if args.body is not None else _default_body(ctx)
        mine = await forge.create_issue(
            title=args.title, body=f"{body}\n\n{mark}", labels=list(args.labels)
        )
        first = (await _marked(forge, mark) or [mine])[0]
        if first.number != mine.number:
            await forge.close_issue(mine)
            return {"number": first.number, "url": first.url, "created": False}
        return {"number": mine.number, "url": mine.url, "created": True}


# One lock per run and repository, while some call holds or awaits it.
_issue_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


async def _marked(forge: Forge, mark: str) -> list[Issue]:
    """The issues carrying ``mark``, oldest first."""
    return sorted(
        (i for i in await forge.recent_issues() if mark in i.body), key=lambda i: i.number
    )


def _default_body(ctx: ToolContext) -> str:
    link = run_page(ctx.run_id)
    lines = [
        f"Made by towline run `{ctx.run_id}` of plan `{ctx.plan or '?'}` "
        f"(workstream `{ctx.workstream}`, task `{ctx.task}`).",
        "",
        f"- Status: `towline status {ctx.run_id}`",
    ]
    if link:
        lines.append(f"- Web UI: {link}")
    return "\n".join(lines)


# ------------------------------------------------------------------------ git


def git_auth_env(remote: str, forge: ForgeKind, token: str | None) -> dict[str, str]:
    """git's environment to authenticate to an HTTPS ``remote`` with ``token``.

    The token goes into an ``http.extraHeader`` set through ``GIT_CONFIG_*`` variables,
    so it is on no command line (``ps`` shows those) and in no file.
    """
    if not token or not remote.startswith("https://"):
        return {}
    basic = base64.b64encode(f"{TOKEN_USER[forge]}:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


async def _remote_url(workspace: Path, remote: str) -> str:
    if "://" in remote or remote.startswith("/"):
        return remote
    done = await git_repo.git(workspace, "remote", "get-url", "--", remote)
    return done.out.strip() if done.code == 0 else remote


async def _push(workspace: Path, args: PrInput, branch: str) -> None:
    if await git_repo.head(workspace) is None:
        raise ToolError("validation", "nothing to push: the workspace has no commit yet")
    valid = await git_repo.git(workspace, "check-ref-format", "--branch", branch)
    if valid.code != 0:
        raise ToolError("validation", f"with.branch: '{branch}' is not a valid branch name")
    env = git_auth_env(await _remote_url(workspace, args.remote), args.forge, args.token)
    argv = ["push", "--porcelain", *(["--force"] if args.force else [])]
    done = await git_repo.git(
        workspace, *argv, "--", args.remote, f"HEAD:refs/heads/{branch}", env=env
    )
    if done.code != 0:
        said = git_repo.hide_credentials(git_repo.message(done), args.remote)
        where = git_repo.display_url(args.remote)
        if "[rejected]" in done.err + done.out:
            raise ToolError(
                "conflict",
                f"push to {where} rejected: branch '{branch}' there has commits the "
                f"workspace does not: {said}",
                hint="someone pushed to the pull request's branch: merge it, or force: true",
            )
        raise ToolError("tool", f"push of '{branch}' to {where} failed: {said}")


async def _delete_branch(workspace: Path, args: PrInput, branch: str) -> bool:
    """Delete ``branch`` on the remote; False when it was not there (already deleted)."""
    env = git_auth_env(await _remote_url(workspace, args.remote), args.forge, args.token)
    done = await git_repo.git(
        workspace, "push", "--porcelain", "--", args.remote, f":refs/heads/{branch}", env=env
    )
    if done.code == 0:
        return True
    if "remote ref does not exist" in done.err + done.out:
        return False
    said = git_repo.hide_credentials(git_repo.message(done), args.remote)
    raise ToolError(
        "tool", f"cannot delete branch '{branch}' on {git_repo.display_url(args.remote)}: {said}"
    )
