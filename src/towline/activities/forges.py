"""Pull requests and issues on a forge's REST API: GitHub, GitLab, Gitea (and Forgejo).

One small client per forge behind one interface (:class:`Forge`), so the ``pr`` tool
says what it wants (find the open pull request of a branch, open one, update it, read
its state and checks, close it, open an issue) and each client says it in its forge's
words:

- GitHub (REST v3, ``Authorization: Bearer``): pulls, issue labels, requested reviewers,
  check runs and the combined commit status;
- GitLab (v4, ``PRIVATE-TOKEN``): merge requests (a draft is a ``Draft:`` title),
  reviewers by user id (looked up by name), the head pipeline;
- Gitea and Forgejo (v1, ``Authorization: token``): pulls (a draft is a ``WIP:``
  title), labels by name, requested reviewers, the combined commit status.

Failures are categorised as the ``http`` tool does (:mod:`towline.activities.tools.http`):
a forge that cannot be reached or answers 5xx/429 is ``tool`` (retried), 409 is
``conflict``, any other unexpected status is ``validation`` (a bad token, repository or
input: the same request fails the same way).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from towline.activities.tools.http import snippet, status_category, transport_error
from towline.errors import ToolError

ForgeKind = Literal["github", "gitlab", "gitea"]
PrState = Literal["open", "closed", "merged"]
Checks = Literal["passed", "pending", "failed"]

DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
# The user name a forge takes with a token as password over HTTPS (for git push).
TOKEN_USER = {"github": "x-access-token", "gitlab": "oauth2", "gitea": "towline"}
TIMEOUT = 30.0
_PAGE = 100  # items per page asked for when looking for a pull request or an issue
_PAGES = 5  # pages read at most: the newest 500 items


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: PrState
    head: str
    base: str
    sha: str
    draft: bool = False

    def outputs(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "url": self.url,
            "state": self.state,
            "branch": self.head,
            "base": self.base,
            "sha": self.sha,
            "draft": self.draft,
        }


@dataclass(frozen=True)
class Issue:
    number: int
    url: str
    body: str


def open_forge(kind: ForgeKind, api_url: str, repo: str, token: str | None) -> Forge:
    """A client for ``repo`` (``owner/name``; on GitLab ``group/subgroup/name``); use it
    as an async context manager, which closes its connections."""
    forge: Forge
    if kind == "github":
        forge = GitHub(api_url, repo, token)
    elif kind == "gitlab":
        forge = GitLab(api_url, repo, token)
    else:
        forge = Gitea(api_url, repo, token)
    return forge


class Forge(ABC):
    """What the ``pr`` tool asks of a forge, over an httpx client for one repository;
    failures are categorised ToolErrors."""

    def __init__(self, api_url: str, repo: str, headers: dict[str, str]) -> None:
        self.repo = repo
        self.base_url = api_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, follow_redirects=True
        )

    async def __aenter__(self) -> Forge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send a request; a reply outside 2xx (and ``ok``) raises a categorised ToolError."""
        url = f"{self.base_url}{path}"
        try:
            reply = await self._client.request(method, path, json=json, params=params)
        except httpx.HTTPError as e:
            raise transport_error(method, url, e) from None
        if reply.is_success or reply.status_code in ok:
            return reply
        raise ToolError(
            status_category(reply.status_code),
            f"{method} {url}: HTTP {reply.status_code} {reply.reason_phrase}{snippet(reply.text)}",
            hint=_hint(reply.status_code),
        )

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self.call(method, path, **kw)).json()

    async def pages(self, path: str, params: dict[str, Any], *, size: str) -> list[Any]:
        """Up to :data:`_PAGES` pages of a list, newest first as the forge sorts them."""
        items: list[Any] = []
        for page in range(1, _PAGES + 1):
            batch = await self.json("GET", path, params={**params, size: _PAGE, "page": page})
            items.extend(batch)
            if len(batch) < _PAGE:
                break
        return items

    @abstractmethod
    async def default_branch(self) -> str: ...

    @abstractmethod
    async def find_open(self, head: str) -> PullRequest | None:
        """The open pull request whose head is branch ``head``, if any."""

    @abstractmethod
    async def get(self, number: int) -> PullRequest: ...

    @abstractmethod
    async def create(
        self, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        """Open a pull request; one already open for ``head`` (an earlier attempt's) is
        returned instead of a second."""

    @abstractmethod
    async def update(
        self, pr: PullRequest, *, title: str, body: str, draft: bool
    ) -> PullRequest: ...

    @abstractmethod
    async def add_labels(self, pr: PullRequest, labels: list[str]) -> None: ...

    @abstractmethod
    async def request_reviewers(self, pr: PullRequest, reviewers: list[str]) -> None: ...

    @abstractmethod
    async def checks(self, pr: PullRequest) -> tuple[Checks, list[str]]:
        """passed, pending or failed, with the names of the checks pending or failed."""

    @abstractmethod
    async def close(self, pr: PullRequest) -> PullRequest: ...

    @abstractmethod
    async def recent_issues(self) -> list[Issue]:
        """The newest issues (up to 500), open or closed."""

    @abstractmethod
    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Issue: ...

    @abstractmethod
    async def close_issue(self, issue: Issue) -> None: ...


def _hint(status: int) -> str | None:
    if status in (401, 403):
        return "check the token (with.token) and what it may do in this repository"
    if status == 404:
        return "check with.repo and with.api_url, and that the token can see the repository"
    return None


def _checks_from_states(states: list[tuple[str, str]]) -> tuple[Checks, list[str]]:
    """``(name, outcome)`` pairs (outcome: success, pending or failure) as one verdict."""
    failed = sorted(name for name, s in states if s == "failure")
    if failed:
        return "failed", failed
    if not states or any(s == "pending" for _, s in states):
        return "pending", sorted(name for name, s in states if s == "pending")
    return "passed", []


# ------------------------------------------------------------------------ GitHub


class GitHub(Forge):
    def __init__(self, api_url: str, repo: str, token: str | None) -> None:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        super().__init__(api_url, repo, headers)
        self.owner = repo.split("/", 1)[0]
        self.path = f"/repos/{repo}"

    def _pr(self, data: dict[str, Any]) -> PullRequest:
        merged = bool(data.get("merged") or data.get("merged_at"))
        return PullRequest(
            number=int(data["number"]),
            url=str(data["html_url"]),
            state="merged" if merged else "open" if data["state"] == "open" else "closed",
            head=str(data["head"]["ref"]),
            base=str(data["base"]["ref"]),
            sha=str(data["head"]["sha"]),
            draft=bool(data.get("draft")),
        )

    async def default_branch(self) -> str:
        return str((await self.json("GET", self.path))["default_branch"])

    async def find_open(self, head: str) -> PullRequest | None:
        found = await self.json(
            "GET", f"{self.path}/pulls", params={"head": f"{self.owner}:{head}", "state": "open"}
        )
        return self._pr(found[0]) if found else None

    async def get(self, number: int) -> PullRequest:
        return self._pr(await self.json("GET", f"{self.path}/pulls/{number}"))

    async def create(
        self, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        data = {"head": head, "base": base, "title": title, "body": body, "draft": draft}
        reply = await self.call("POST", f"{self.path}/pulls", json=data, ok=(422,))
        if reply.status_code == 422:
            # Opened by an attempt whose answer was lost: that one is the pull request.
            existing = await self.find_open(head)
            if existing is None:
                raise ToolError(
                    "validation",
                    f"cannot open a pull request from {head} into {base}: {snippet(reply.text)}",
                )
            return existing
        return self._pr(reply.json())

    async def update(self, pr: PullRequest, *, title: str, body: str, draft: bool) -> PullRequest:
        data = await self.json(
            "PATCH", f"{self.path}/pulls/{pr.number}", json={"title": title, "body": body}
        )
        return self._pr(data)

    async def add_labels(self, pr: PullRequest, labels: list[str]) -> None:
        await self.call("POST", f"{self.path}/issues/{pr.number}/labels", json={"labels": labels})

    async def request_reviewers(self, pr: PullRequest, reviewers: list[str]) -> None:
        await self.call(
            "POST",
            f"{self.path}/pulls/{pr.number}/requested_reviewers",
            json={"reviewers": reviewers},
        )

    async def checks(self, pr: PullRequest) -> tuple[Checks, list[str]]:
        runs = await self.json(
            "GET", f"{self.path}/commits/{pr.sha}/check-runs", params={"per_page": _PAGE}
        )
        states: list[tuple[str, str]] = []
        for run in runs.get("check_runs", []):
            conclusion = run.get("conclusion")
            if run.get("status") != "completed":
                states.append((run["name"], "pending"))
            elif conclusion in ("success", "neutral", "skipped"):
                states.append((run["name"], "success"))
            else:
                states.append((run["name"], "failure"))
        combined = await self.json("GET", f"{self.path}/commits/{pr.sha}/status")
        for status in combined.get("statuses", []):
            state = status["state"]
            outcome = state if state in ("success", "pending") else "failure"
            states.append((status["context"], outcome))
        return _checks_from_states(states)

    async def close(self, pr: PullRequest) -> PullRequest:
        data = await self.json("PATCH", f"{self.path}/pulls/{pr.number}", json={"state": "closed"})
        return self._pr(data)

    async def recent_issues(self) -> list[Issue]:
        params = {"state": "all", "sort": "created", "direction": "desc"}
        found = await self.pages(f"{self.path}/issues", params, size="per_page")
        return [
            Issue(int(i["number"]), str(i["html_url"]), str(i.get("body") or ""))
            for i in found
            if "pull_request" not in i  # GitHub lists pull requests among issues
        ]

    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        data = {"title": title, "body": body, "labels": labels}
        i = await self.json("POST", f"{self.path}/issues", json=data)
        return Issue(int(i["number"]), str(i["html_url"]), str(i.get("body") or ""))

    async def close_issue(self, issue: Issue) -> None:
        await self.call("PATCH", f"{self.path}/issues/{issue.number}", json={"state": "closed"})


# ------------------------------------------------------------------------ GitLab

_GITLAB_DRAFT = "Draft: "
_GITLAB_CHECKS: dict[str, str] = {
    "success": "success",
    "skipped": "success",
    "manual": "success",
    "failed": "failure",
    "canceled": "failure",
}


class GitLab(Forge):
    def __init__(self, api_url: str, repo: str, token: str | None) -> None:
        headers = {"PRIVATE-TOKEN": token} if token else {}
        super().__init__(api_url, repo, headers)
        self.path = f"/projects/{quote(repo, safe='')}"

    def _pr(self, data: dict[str, Any]) -> PullRequest:
        state = data["state"]
        return PullRequest(
            number=int(data["iid"]),
            url=str(data["web_url"]),
            state="merged" if state == "merged" else "open" if state == "opened" else "closed",
            head=str(data["source_branch"]),
            base=str(data["target_branch"]),
            sha=str(data.get("sha") or ""),
            draft=bool(data.get("draft") or data.get("work_in_progress")),
        )

    async def default_branch(self) -> str:
        return str((await self.json("GET", self.path))["default_branch"])

    async def find_open(self, head: str) -> PullRequest | None:
        found = await self.json(
            "GET", f"{self.path}/merge_requests", params={"source_branch": head, "state": "opened"}
        )
        return self._pr(found[0]) if found else None

    async def get(self, number: int) -> PullRequest:
        return self._pr(await self.json("GET", f"{self.path}/merge_requests/{number}"))

    async def create(
        self, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        data = {
            "source_branch": head,
            "target_branch": base,
            "title": _GITLAB_DRAFT + title if draft else title,
            "description": body,
        }
        reply = await self.call("POST", f"{self.path}/merge_requests", json=data, ok=(409,))
        if reply.status_code == 409:  # "Another open merge request already exists"
            existing = await self.find_open(head)
            if existing is not None:
                return existing
            raise ToolError("conflict", f"cannot open a merge request from {head}: {reply.text}")
        return self._pr(reply.json())

    async def update(self, pr: PullRequest, *, title: str, body: str, draft: bool) -> PullRequest:
        data = {"title": _GITLAB_DRAFT + title if draft else title, "description": body}
        return self._pr(
            await self.json("PUT", f"{self.path}/merge_requests/{pr.number}", json=data)
        )

    async def add_labels(self, pr: PullRequest, labels: list[str]) -> None:
        await self.call(
            "PUT",
            f"{self.path}/merge_requests/{pr.number}",
            json={"add_labels": ",".join(labels)},
        )

    async def request_reviewers(self, pr: PullRequest, reviewers: list[str]) -> None:
        ids = []
        for name in reviewers:
            users = await self.json("GET", "/users", params={"username": name})
            if not users:
                raise ToolError("validation", f"with.reviewers: no GitLab user named '{name}'")
            ids.append(int(users[0]["id"]))
        await self.call(
            "PUT", f"{self.path}/merge_requests/{pr.number}", json={"reviewer_ids": ids}
        )

    async def checks(self, pr: PullRequest) -> tuple[Checks, list[str]]:
        data = await self.json("GET", f"{self.path}/merge_requests/{pr.number}")
        pipeline = data.get("head_pipeline")
        if not pipeline:
            return "pending", []
        outcome = _GITLAB_CHECKS.get(str(pipeline["status"]), "pending")
        return _checks_from_states([(f"pipeline {pipeline['id']}", outcome)])

    async def close(self, pr: PullRequest) -> PullRequest:
        data = await self.json(
            "PUT", f"{self.path}/merge_requests/{pr.number}", json={"state_event": "close"}
        )
        return self._pr(data)

    async def recent_issues(self) -> list[Issue]:
        params = {"order_by": "created_at", "sort": "desc", "state": "all"}
        found = await self.pages(f"{self.path}/issues", params, size="per_page")
        return [
            Issue(int(i["iid"]), str(i["web_url"]), str(i.get("description") or "")) for i in found
        ]

    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        data = {"title": title, "description": body, "labels": ",".join(labels)}
        i = await self.json("POST", f"{self.path}/issues", json=data)
        return Issue(int(i["iid"]), str(i["web_url"]), str(i.get("description") or ""))

    async def close_issue(self, issue: Issue) -> None:
        await self.call("PUT", f"{self.path}/issues/{issue.number}", json={"state_event": "close"})


# ------------------------------------------------------------------------ Gitea, Forgejo

_GITEA_DRAFT = "WIP: "


class Gitea(Forge):
    def __init__(self, api_url: str, repo: str, token: str | None) -> None:
        headers = {"Authorization": f"token {token}"} if token else {}
        super().__init__(api_url, repo, headers)
        self.path = f"/repos/{repo}"

    def _pr(self, data: dict[str, Any]) -> PullRequest:
        merged = bool(data.get("merged"))
        title = str(data.get("title") or "")
        return PullRequest(
            number=int(data["number"]),
            url=str(data["html_url"]),
            state="merged" if merged else "open" if data["state"] == "open" else "closed",
            head=str(data["head"]["ref"]),
            base=str(data["base"]["ref"]),
            sha=str(data["head"]["sha"]),
            draft=title.startswith(_GITEA_DRAFT),
        )

    async def default_branch(self) -> str:
        return str((await self.json("GET", self.path))["default_branch"])

    async def find_open(self, head: str) -> PullRequest | None:
        found = await self.pages(f"{self.path}/pulls", {"state": "open"}, size="limit")
        for data in found:
            if data["head"]["ref"] == head:
                return self._pr(data)
        return None

    async def get(self, number: int) -> PullRequest:
        return self._pr(await self.json("GET", f"{self.path}/pulls/{number}"))

    async def create(
        self, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        data = {"head": head, "base": base, "title": _GITEA_DRAFT + title if draft else title}
        data["body"] = body
        reply = await self.call("POST", f"{self.path}/pulls", json=data, ok=(409, 422))
        if reply.status_code in (409, 422):  # "pull request already exists for these targets"
            existing = await self.find_open(head)
            if existing is not None:
                return existing
            raise ToolError("validation", f"cannot open a pull request from {head}: {reply.text}")
        return self._pr(reply.json())

    async def update(self, pr: PullRequest, *, title: str, body: str, draft: bool) -> PullRequest:
        data = {"title": _GITEA_DRAFT + title if draft else title, "body": body}
        return self._pr(await self.json("PATCH", f"{self.path}/pulls/{pr.number}", json=data))

    async def add_labels(self, pr: PullRequest, labels: list[str]) -> None:
        await self.call("POST", f"{self.path}/issues/{pr.number}/labels", json={"labels": labels})

    async def request_reviewers(self, pr: PullRequest, reviewers: list[str]) -> None:
        await self.call(
            "POST",
            f"{self.path}/pulls/{pr.number}/requested_reviewers",
            json={"reviewers": reviewers},
        )

    async def checks(self, pr: PullRequest) -> tuple[Checks, list[str]]:
        combined = await self.json("GET", f"{self.path}/commits/{pr.sha}/status")
        states = []
        for status in combined.get("statuses") or []:
            state = status["status"] if "status" in status else status.get("state", "")
            outcome = state if state in ("success", "pending") else "failure"
            if state == "warning":
                outcome = "success"
            states.append((str(status["context"]), outcome))
        return _checks_from_states(states)

    async def close(self, pr: PullRequest) -> PullRequest:
        data = await self.json("PATCH", f"{self.path}/pulls/{pr.number}", json={"state": "closed"})
        return self._pr(data)

    async def recent_issues(self) -> list[Issue]:
        params = {"state": "all", "type": "issues"}
        found = await self.pages(f"{self.path}/issues", params, size="limit")
        return [
            Issue(int(i["number"]), str(i["html_url"]), str(i.get("body") or "")) for i in found
        ]

    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        i = await self.json("POST", f"{self.path}/issues", json={"title": title, "body": body})
        issue = Issue(int(i["number"]), str(i["html_url"]), str(i.get("body") or ""))
        if labels:
            await self.call(
                "POST", f"{self.path}/issues/{issue.number}/labels", json={"labels": labels}
            )
        return issue

    async def close_issue(self, issue: Issue) -> None:
        await self.call("PATCH", f"{self.path}/issues/{issue.number}", json={"state": "closed"})
