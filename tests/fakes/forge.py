"""A fake forge for the ``pr`` tool: GitHub's REST API, GitLab's v4 and Gitea's v1, over a
socket, on real bare git repositories.

No forge can run here (none is packaged for Debian or PyPI), so this server speaks the
parts of their APIs that towline uses, the way they answer: the pull request of a branch,
opening one (refused when the branch is not on the remote, or one is already open for
it), updating, labels, reviewers, commit statuses and check runs, closing, merging and
issues. Each repository is a real bare git repository: a pull request's head sha is the
branch's as pushed, and merging (``PUT /repos/{o}/{r}/pulls/{n}/merge`` on GitHub,
``PUT .../merge_requests/{iid}/merge`` on GitLab, ``POST .../pulls/{n}/merge`` on Gitea)
writes a real merge commit onto the base branch.

Paths: GitHub's at the root (``/repos/...``), GitLab's under ``/api/v4``, Gitea's under
``/api/v1``; all three see the same repositories.

    python -m tests.fakes.forge --port 8787 --repo acme/api=repos/api.git --token t0ken
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.fakes.servers import LocalServer, Reply, Request

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "fake forge",
    "GIT_AUTHOR_EMAIL": "forge@localhost",
    "GIT_COMMITTER_NAME": "fake forge",
    "GIT_COMMITTER_EMAIL": "forge@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@dataclass
class Change:
    """A pull (merge) request or an issue: the forges number both from one sequence."""

    number: int
    title: str
    body: str
    head: str = ""  # empty for an issue
    base: str = ""
    state: str = "open"  # open or closed
    merged: bool = False
    draft: bool = False
    sha: str = ""
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def is_pull(self) -> bool:
        return bool(self.head)


@dataclass
class Repo:
    name: str
    path: Path  # the bare repository
    changes: list[Change] = field(default_factory=list)
    statuses: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> context -> state
    check_runs: dict[str, dict[str, tuple[str, str | None]]] = field(default_factory=dict)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **_GIT_ENV},
            capture_output=True,
            text=True,
            check=False,
        )

    def sha(self, branch: str) -> str | None:
        done = self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        return done.stdout.strip() if done.returncode == 0 else None

    def default_branch(self) -> str:
        done = self.git("symbolic-ref", "--short", "HEAD")
        return done.stdout.strip() or "main"

    def pulls(self) -> list[Change]:
        return [c for c in self.changes if c.is_pull]

    def issues(self) -> list[Change]:
        return [c for c in self.changes if not c.is_pull]

    def refresh(self, change: Change) -> Change:
        """A pull request's head sha follows its branch while it is open."""
        if change.is_pull and change.state == "open":
            change.sha = self.sha(change.head) or change.sha
        return change

    def merge(self, change: Change) -> str:
        """Merge the head into the base with a merge commit; the new base sha."""
        base, head = self.sha(change.base), self.sha(change.head)
        if base is None or head is None:
            raise ValueError("the pull request's branches are gone")
        tree = self.git("merge-tree", "--write-tree", base, head)
        if tree.returncode != 0:
            raise ValueError(f"merge conflict: {tree.stdout}")
        message = f"Merge pull request #{change.number} from {change.head}"
        commit = self.git(
            "commit-tree", tree.stdout.split()[0], "-p", base, "-p", head, "-m", message
        )
        sha = commit.stdout.strip()
        self.git("update-ref", f"refs/heads/{change.base}", sha, base)
        change.state, change.merged, change.sha = "closed", True, head
        return sha


class FakeForge:
    """The server and its repositories; tests reach into :attr:`repos` to look."""

    def __init__(self, repos: dict[str, Path], *, token: str | None = None, port: int = 0) -> None:
        self.repos = {name: Repo(name, path) for name, path in repos.items()}
        self.token = token
        self.lose_next_open = False
        self._lock = threading.Lock()
        self.server = LocalServer(self._handle, port=port)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeForge:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(None, None, None)

    def api_url(self, forge: str) -> str:
        return {"github": self.url, "gitlab": f"{self.url}/api/v4", "gitea": f"{self.url}/api/v1"}[
            forge
        ]

    def pulls(self, repo: str) -> list[Change]:
        return self.repos[repo].pulls()

    def issues(self, repo: str) -> list[Change]:
        return self.repos[repo].issues()

    # ------------------------------------------------------------------ routing

    def _handle(self, request: Request) -> Reply:
        with self._lock:
            try:
                if request.path.startswith("/api/v4/"):
                    return self._gitlab(request, request.path.removeprefix("/api/v4"))
                if request.path.startswith("/api/v1/"):
                    return self._gitea(request, request.path.removeprefix("/api/v1"))
                return self._github(request, request.path)
            except _Fail as e:
                return e.reply

    def _auth(self, request: Request, header: str, prefix: str) -> None:
        if self.token is None:
            return
        if request.headers.get(header.lower()) != f"{prefix}{self.token}":
            raise _Fail(Reply.of_json({"message": "Bad credentials"}, 401))

    def _repo(self, name: str) -> Repo:
        repo = self.repos.get(name)
        if repo is None:
            raise _Fail(Reply.of_json({"message": "Not Found"}, 404))
        return repo

    def _new(self, repo: Repo, **fields: Any) -> Change:
        change = Change(number=len(repo.changes) + 1, **fields)
        repo.changes.append(change)
        return change

    def _find(self, repo: Repo, number: int) -> Change:
        for change in repo.changes:
            if change.number == number:
                return repo.refresh(change)
        raise _Fail(Reply.of_json({"message": "Not Found"}, 404))

    def _open_pull(
        self, repo: Repo, head: str, base: str, title: str, body: str, draft: bool
    ) -> tuple[Change | None, str | None]:
        """A new pull request, or the reason it cannot be: ``(change, None)`` or
        ``(None, reason)``. With :attr:`lose_next_open`, the next one is opened but its
        answer lost (the caller sees a 502), as when a connection drops."""
        if repo.sha(head) is None:
            return None, f"head branch '{head}' does not exist"
        if repo.sha(base) is None:
            return None, f"base branch '{base}' does not exist"
        if any(c.head == head and c.state == "open" for c in repo.pulls()):
            return None, f"A pull request already exists for {head}"
        change = self._new(repo, title=title, body=body, head=head, base=base, draft=draft)
        repo.refresh(change)
        if self.lose_next_open:
            self.lose_next_open = False
            raise _Fail(Reply.of_json({"message": "bad gateway"}, 502))
        return change, None

    def _verdicts(self, repo: Repo, sha: str) -> list[dict[str, str]]:
        return [
            {"context": ctx, "state": state} for ctx, state in repo.statuses.get(sha, {}).items()
        ]

    # ------------------------------------------------------------------ GitHub

    def _gh_pull(self, repo: Repo, c: Change) -> dict[str, Any]:
        return {
            "number": c.number,
            "html_url": f"{self.url}/{repo.name}/pull/{c.number}",
            "state": c.state,
            "title": c.title,
            "body": c.body,
            "draft": c.draft,
            "merged": c.merged,
            "merged_at": "2026-01-01T00:00:00Z" if c.merged else None,
            "head": {"ref": c.head, "sha": c.sha},
            "base": {"ref": c.base},
            "labels": [{"name": n} for n in c.labels],
            "requested_reviewers": [{"login": n} for n in c.reviewers],
        }

    def _gh_issue(self, repo: Repo, c: Change) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": c.number,
            "html_url": f"{self.url}/{repo.name}/issues/{c.number}",
            "state": c.state,
            "title": c.title,
            "body": c.body,
            "labels": [{"name": n} for n in c.labels],
        }
        if c.is_pull:
            out["pull_request"] = {"url": f"{self.url}/{repo.name}/pull/{c.number}"}
        return out

    def _github(self, req: Request, path: str) -> Reply:
        self._auth(req, "Authorization", "Bearer ")
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if m is None:
            return Reply.of_json({"message": "Not Found"}, 404)
        repo, rest, verb = self._repo(m.group(1)), m.group(2) or "", req.method
        q = {k: v[0] for k, v in req.query.items()}
        if rest == "" and verb == "GET":
            return Reply.of_json({"full_name": repo.name, "default_branch": repo.default_branch()})
        if rest == "/pulls" and verb == "GET":
            want = q.get("state", "open")
            head = q.get("head", "").split(":", 1)[-1]
            found = [
                self._gh_pull(repo, repo.refresh(c))
                for c in reversed(repo.pulls())
                if (want == "all" or c.state == want) and (not head or c.head == head)
            ]
            return Reply.of_json(found)
        if rest == "/pulls" and verb == "POST":
            body = req.json()
            change, why = self._open_pull(
                repo,
                body["head"],
                body["base"],
                body["title"],
                body.get("body") or "",
                bool(body.get("draft")),
            )
            if change is None:
                return Reply.of_json({"message": "Validation Failed", "errors": [why]}, 422)
            return Reply.of_json(self._gh_pull(repo, change), 201)
        if m2 := re.fullmatch(r"/pulls/(\d+)", rest):
            c = self._find(repo, int(m2.group(1)))
            if verb == "PATCH":
                body = req.json()
                c.title = body.get("title", c.title)
                c.body = body.get("body", c.body)
                if body.get("state") in ("open", "closed") and not c.merged:
                    c.state = body["state"]
            return Reply.of_json(self._gh_pull(repo, c))
        if (m2 := re.fullmatch(r"/pulls/(\d+)/merge", rest)) and verb == "PUT":
            c = self._find(repo, int(m2.group(1)))
            if c.state != "open":
                return Reply.of_json({"message": "Pull Request is not mergeable"}, 405)
            try:
                sha = repo.merge(c)
            except ValueError as e:
                return Reply.of_json({"message": str(e)}, 405)
            return Reply.of_json({"sha": sha, "merged": True, "message": "merged"})
        if (m2 := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", rest)) and verb == "POST":
            c = self._find(repo, int(m2.group(1)))
            c.reviewers += [r for r in req.json()["reviewers"] if r not in c.reviewers]
            return Reply.of_json(self._gh_pull(repo, c), 201)
        if (m2 := re.fullmatch(r"/issues/(\d+)/labels", rest)) and verb == "POST":
            c = self._find(repo, int(m2.group(1)))
            c.labels += [n for n in req.json()["labels"] if n not in c.labels]
            return Reply.of_json([{"name": n} for n in c.labels])
        if (m2 := re.fullmatch(r"/issues/(\d+)", rest)) and verb == "PATCH":
            c = self._find(repo, int(m2.group(1)))
            c.state = req.json().get("state", c.state)
            return Reply.of_json(self._gh_issue(repo, c))
        if rest == "/issues" and verb == "GET":
            page, size = int(q.get("page", 1)), int(q.get("per_page", 30))
            newest = sorted(repo.changes, key=lambda c: c.number, reverse=True)
            chunk = newest[(page - 1) * size : page * size]
            return Reply.of_json([self._gh_issue(repo, c) for c in chunk])
        if rest == "/issues" and verb == "POST":
            body = req.json()
            c = self._new(
                repo,
                title=body["title"],
                body=body.get("body") or "",
                labels=list(body.get("labels") or []),
            )
            return Reply.of_json(self._gh_issue(repo, c), 201)
        if (m2 := re.fullmatch(r"/statuses/([0-9a-f]+)", rest)) and verb == "POST":
            body = req.json()
            repo.statuses.setdefault(m2.group(1), {})[body.get("context", "default")] = body[
                "state"
            ]
            return Reply.of_json(body, 201)
        if (m2 := re.fullmatch(r"/commits/([^/]+)/status", rest)) and verb == "GET":
            statuses = self._verdicts(repo, m2.group(1))
            return Reply.of_json({"statuses": statuses, "total_count": len(statuses)})
        if (m2 := re.fullmatch(r"/commits/([^/]+)/check-runs", rest)) and verb == "GET":
            runs = [
                {"name": name, "status": status, "conclusion": conclusion}
                for name, (status, conclusion) in repo.check_runs.get(m2.group(1), {}).items()
            ]
            return Reply.of_json({"total_count": len(runs), "check_runs": runs})
        if rest == "/check-runs" and verb == "POST":
            body = req.json()
            repo.check_runs.setdefault(body["head_sha"], {})[body["name"]] = (
                body.get("status", "queued"),
                body.get("conclusion"),
            )
            return Reply.of_json(body, 201)
        return Reply.of_json({"message": f"Not Found: {verb} {rest}"}, 404)

    # ------------------------------------------------------------------ GitLab

    def _gl_mr(self, repo: Repo, c: Change) -> dict[str, Any]:
        state = "merged" if c.merged else "opened" if c.state == "open" else "closed"
        statuses = [s["state"] for s in self._verdicts(repo, c.sha)]
        pipeline = None
        if statuses:
            status = (
                "failed"
                if "failed" in statuses
                else "running"
                if any(s in ("pending", "running") for s in statuses)
                else "success"
            )
            pipeline = {"id": 1, "status": status}
        return {
            "iid": c.number,
            "web_url": f"{self.url}/{repo.name}/-/merge_requests/{c.number}",
            "state": state,
            "title": c.title,
            "description": c.body,
            "draft": c.title.startswith("Draft:"),
            "source_branch": c.head,
            "target_branch": c.base,
            "sha": c.sha,
            "labels": c.labels,
            "reviewers": [{"username": r} for r in c.reviewers],
            "head_pipeline": pipeline,
        }

    def _gitlab(self, req: Request, path: str) -> Reply:
        self._auth(req, "PRIVATE-TOKEN", "")
        q = {k: v[0] for k, v in req.query.items()}
        if path == "/users" and req.method == "GET":
            name = q.get("username", "")
            return Reply.of_json([{"id": 100 + len(name), "username": name}] if name else [])
        m = re.fullmatch(r"/projects/([^/]+)(/.*)?", path)
        if m is None:
            return Reply.of_json({"message": "404 Not Found"}, 404)
        repo, rest, verb = self._repo(unquote(m.group(1))), m.group(2) or "", req.method
        if rest == "" and verb == "GET":
            return Reply.of_json(
                {"path_with_namespace": repo.name, "default_branch": repo.default_branch()}
            )
        if rest == "/merge_requests" and verb == "GET":
            want = {"opened": "open", "closed": "closed"}.get(q.get("state", ""))
            found = [
                self._gl_mr(repo, repo.refresh(c))
                for c in reversed(repo.pulls())
                if (want is None or (c.state == want and not c.merged))
                and c.head == q.get("source_branch", c.head)
            ]
            return Reply.of_json(found)
        if rest == "/merge_requests" and verb == "POST":
            body = req.json()
            change, why = self._open_pull(
                repo,
                body["source_branch"],
                body["target_branch"],
                body["title"],
                body.get("description") or "",
                False,
            )
            if change is None:
                status = 409 if why and "already exists" in why else 400
                return Reply.of_json({"message": [why]}, status)
            return Reply.of_json(self._gl_mr(repo, change), 201)
        if m2 := re.fullmatch(r"/merge_requests/(\d+)", rest):
            c = self._find(repo, int(m2.group(1)))
            if verb == "PUT":
                body = req.json()
                c.title = body.get("title", c.title)
                c.body = body.get("description", c.body)
                if body.get("add_labels"):
                    c.labels += [n for n in body["add_labels"].split(",") if n not in c.labels]
                if "reviewer_ids" in body:
                    c.reviewers = [f"user{i}" for i in body["reviewer_ids"]]
                if body.get("state_event") == "close" and not c.merged:
                    c.state = "closed"
            return Reply.of_json(self._gl_mr(repo, c))
        if (m2 := re.fullmatch(r"/merge_requests/(\d+)/merge", rest)) and verb == "PUT":
            c = self._find(repo, int(m2.group(1)))
            repo.merge(c)
            return Reply.of_json(self._gl_mr(repo, c))
        if (m2 := re.fullmatch(r"/statuses/([0-9a-f]+)", rest)) and verb == "POST":
            body = req.json()
            repo.statuses.setdefault(m2.group(1), {})[body.get("name", "default")] = body["state"]
            return Reply.of_json(body, 201)
        if (m2 := re.fullmatch(r"/issues/(\d+)", rest)) and verb == "PUT":
            c = self._find(repo, int(m2.group(1)))
            if req.json().get("state_event") == "close":
                c.state = "closed"
            return Reply.of_json({"iid": c.number, "state": c.state})
        if rest == "/issues" and verb == "GET":
            page, size = int(q.get("page", 1)), int(q.get("per_page", 20))
            newest = sorted(repo.issues(), key=lambda c: c.number, reverse=True)
            return Reply.of_json(
                [
                    {
                        "iid": c.number,
                        "web_url": f"{self.url}/{repo.name}/-/issues/{c.number}",
                        "title": c.title,
                        "description": c.body,
                        "labels": c.labels,
                    }
                    for c in newest[(page - 1) * size : page * size]
                ]
            )
        if rest == "/issues" and verb == "POST":
            body = req.json()
            labels = [n for n in (body.get("labels") or "").split(",") if n]
            c = self._new(
                repo, title=body["title"], body=body.get("description") or "", labels=labels
            )
            return Reply.of_json(
                {
                    "iid": c.number,
                    "web_url": f"{self.url}/{repo.name}/-/issues/{c.number}",
                    "description": c.body,
                },
                201,
            )
        return Reply.of_json({"message": f"404 Not Found: {verb} {rest}"}, 404)

    # ------------------------------------------------------------------ Gitea

    def _gt_pull(self, repo: Repo, c: Change) -> dict[str, Any]:
        return {
            "number": c.number,
            "html_url": f"{self.url}/{repo.name}/pulls/{c.number}",
            "state": c.state,
            "title": c.title,
            "body": c.body,
            "merged": c.merged,
            "head": {"ref": c.head, "sha": c.sha},
            "base": {"ref": c.base},
            "labels": [{"name": n} for n in c.labels],
            "requested_reviewers": [{"login": n} for n in c.reviewers],
        }

    def _gitea(self, req: Request, path: str) -> Reply:
        self._auth(req, "Authorization", "token ")
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if m is None:
            return Reply.of_json({"message": "not found"}, 404)
        repo, rest, verb = self._repo(m.group(1)), m.group(2) or "", req.method
        q = {k: v[0] for k, v in req.query.items()}
        page, size = int(q.get("page", 1)), int(q.get("limit", 30))
        if rest == "" and verb == "GET":
            return Reply.of_json({"full_name": repo.name, "default_branch": repo.default_branch()})
        if rest == "/pulls" and verb == "GET":
            want = q.get("state", "open")
            found = [c for c in reversed(repo.pulls()) if want == "all" or c.state == want][
                (page - 1) * size : page * size
            ]
            return Reply.of_json([self._gt_pull(repo, repo.refresh(c)) for c in found])
        if rest == "/pulls" and verb == "POST":
            body = req.json()
            change, why = self._open_pull(
                repo, body["head"], body["base"], body["title"], body.get("body") or "", False
            )
            if change is None:
                status = 409 if why and "already exists" in why else 422
                return Reply.of_json({"message": why}, status)
            return Reply.of_json(self._gt_pull(repo, change), 201)
        if m2 := re.fullmatch(r"/pulls/(\d+)", rest):
            c = self._find(repo, int(m2.group(1)))
            if verb == "PATCH":
                body = req.json()
                c.title = body.get("title", c.title)
                c.body = body.get("body", c.body)
                if body.get("state") in ("open", "closed") and not c.merged:
                    c.state = body["state"]
            return Reply.of_json(self._gt_pull(repo, c))
        if (m2 := re.fullmatch(r"/pulls/(\d+)/merge", rest)) and verb == "POST":
            repo.merge(self._find(repo, int(m2.group(1))))
            return Reply(200)
        if (m2 := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", rest)) and verb == "POST":
            c = self._find(repo, int(m2.group(1)))
            c.reviewers += [r for r in req.json()["reviewers"] if r not in c.reviewers]
            return Reply.of_json([], 201)
        if (m2 := re.fullmatch(r"/issues/(\d+)/labels", rest)) and verb == "POST":
            c = self._find(repo, int(m2.group(1)))
            c.labels += [n for n in req.json()["labels"] if n not in c.labels]
            return Reply.of_json([{"name": n} for n in c.labels])
        if (m2 := re.fullmatch(r"/issues/(\d+)", rest)) and verb == "PATCH":
            c = self._find(repo, int(m2.group(1)))
            c.state = req.json().get("state", c.state)
            return Reply.of_json({"number": c.number, "state": c.state})
        if rest == "/issues" and verb == "GET":
            newest = sorted(repo.issues(), key=lambda c: c.number, reverse=True)
            return Reply.of_json(
                [
                    {
                        "number": c.number,
                        "html_url": f"{self.url}/{repo.name}/issues/{c.number}",
                        "title": c.title,
                        "body": c.body,
                    }
                    for c in newest[(page - 1) * size : page * size]
                ]
            )
        if rest == "/issues" and verb == "POST":
            body = req.json()
            c = self._new(repo, title=body["title"], body=body.get("body") or "")
            return Reply.of_json(
                {
                    "number": c.number,
                    "html_url": f"{self.url}/{repo.name}/issues/{c.number}",
                    "body": c.body,
                },
                201,
            )
        if (m2 := re.fullmatch(r"/statuses/([0-9a-f]+)", rest)) and verb == "POST":
            body = req.json()
            repo.statuses.setdefault(m2.group(1), {})[body.get("context", "default")] = body[
                "state"
            ]
            return Reply.of_json(body, 201)
        if (m2 := re.fullmatch(r"/commits/([^/]+)/status", rest)) and verb == "GET":
            statuses = [
                {"context": s["context"], "status": s["state"]}
                for s in self._verdicts(repo, m2.group(1))
            ]
            return Reply.of_json({"statuses": statuses, "total_count": len(statuses)})
        return Reply.of_json({"message": f"not found: {verb} {rest}"}, 404)


class _Fail(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="OWNER/NAME=PATH",
        required=True,
        help="a repository the forge serves, and the bare git repository behind it",
    )
    parser.add_argument("--token", help="the token requests must carry (default: any)")
    args = parser.parse_args()
    repos = {}
    for item in args.repo:
        name, _, path = item.partition("=")
        repos[name] = Path(path).resolve()
    with FakeForge(repos, token=args.token, port=args.port) as forge:
        print(f"fake forge on {forge.url} (GitHub API at /, GitLab /api/v4, Gitea /api/v1)")
        print("serving: " + ", ".join(f"{n} ({p})" for n, p in repos.items()), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
