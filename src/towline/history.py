"""The run history store: every finished tool call, and the cache of tool results.

Workers write one row per tool call (each attempt of an activity) and the results of
calls that asked for ``cache:``; the CLI reads them for ``towline stats``, the ETA in
``watch`` and ``timeout: auto``. The store is an SQLite file by default
(``<towline home>/history.db``, or ``TOWLINE_HISTORY``), in WAL mode so several worker
processes on one machine share it; a ``postgresql://`` DSN in ``TOWLINE_HISTORY`` puts it
in PostgreSQL for a fleet of workers (``pip install 'towline[postgres]'``).

Methods are synchronous and short: async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from towline import config

Outcome = Literal["succeeded", "failed", "cancelled"]

_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's transaction
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# Portable SQL: SQLite and PostgreSQL both read these types and `ON CONFLICT` upserts.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tool_calls (
        run_id TEXT NOT NULL,
        plan TEXT NOT NULL,
        workstream TEXT NOT NULL,
        task TEXT NOT NULL,
        tool TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        category TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        duration_s DOUBLE PRECISION NOT NULL,
        tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        cached INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tool_calls_by_tool ON tool_calls (tool, started_at)",
    "CREATE INDEX IF NOT EXISTS tool_calls_by_task ON tool_calls (plan, workstream, task)",
    "CREATE INDEX IF NOT EXISTS tool_calls_by_run ON tool_calls (run_id)",
    """CREATE TABLE IF NOT EXISTS cache (
        key TEXT PRIMARY KEY,
        tool TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cache_by_expiry ON cache (expires_at)",
    # One row per agent conversation (the agent tool); a fix's row says whether the task
    # passed on its next try, which is what the memory of past fixes is made of.
    """CREATE TABLE IF NOT EXISTS agent_runs (
        run_id TEXT NOT NULL,
        plan TEXT NOT NULL,
        workstream TEXT NOT NULL,
        task TEXT NOT NULL,
        label TEXT NOT NULL,
        model TEXT NOT NULL,
        signature TEXT NOT NULL,
        summary TEXT NOT NULL,
        diff TEXT NOT NULL,
        stop TEXT NOT NULL,
        turns INTEGER NOT NULL,
        tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        fixed INTEGER,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS agent_runs_by_fixed ON agent_runs (fixed, created_at)",
)


@dataclass(frozen=True)
class ToolCallRecord:
    """One finished tool call: one attempt of one task's tool activity."""

    run_id: str
    plan: str
    workstream: str
    task: str
    tool: str
    attempt: int
    outcome: Outcome
    category: str | None  # why it failed (an error category); None when it succeeded
    started_at: float  # seconds since the epoch
    duration_s: float
    tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False  # a cache hit: the tool did not run


_COLUMNS = tuple(f.name for f in fields(ToolCallRecord))


@dataclass(frozen=True)
class AgentRunRecord:
    """One agent conversation: what it cost, how it ended and, for a fix, whether the task
    passed on its next try (None: not a fix)."""

    run_id: str
    plan: str
    workstream: str
    task: str
    label: str  # main, fix1, ...
    model: str
    signature: tuple[str, ...]  # the failure's (towline.agent.memory), for fixes
    summary: str
    diff: str
    stop: str  # answered, max_turns, max_tokens, max_cost_usd, budget, timeout, error
    turns: int
    tokens: int
    cost_usd: float
    fixed: bool | None
    created_at: float


_AGENT_COLUMNS = tuple(f.name for f in fields(AgentRunRecord))
PAST_FIXES = 500  # the newest successful fixes a memory lookup reads


@dataclass(frozen=True)
class CacheEntry:
    result: dict[str, Any]
    created_at: float


def location() -> str:
    """Where the history lives: ``TOWLINE_HISTORY`` (a path or a DSN), else the home's file."""
    return os.environ.get("TOWLINE_HISTORY") or str(config.home() / "history.db")


def open_store(where: str | None = None) -> HistoryStore:
    """The store at ``where`` (default :func:`location`): SQLite, or PostgreSQL for a DSN."""
    where = where or location()
    if where.startswith(_POSTGRES_SCHEMES):
        return _PostgresStore(where)
    return _SQLiteStore(Path(where))


def cache_key(tool: str, args: dict[str, Any], extras: str | Sequence[str] | None) -> str:
    """The identity of a cacheable call: its tool, its input and the task's ``cache.key``.

    ``args`` is the input as the workflow resolved it: ``${{ secrets.X }}`` is still text
    there, so no secret value enters the key, and a changed secret does not change it.
    JSON with sorted keys makes the key independent of how the plan ordered its mappings.
    """
    extra = [extras] if isinstance(extras, str) else list(extras or [])
    canonical = json.dumps(
        {"tool": tool, "args": args, "key": extra},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class HistoryStore(ABC):
    """Reading and writing the history; a backend provides connections and placeholders."""

    location: str

    def exists(self) -> bool:
        """Whether there is anything to read (a store never written to need not be created)."""
        return True

    def record(self, rec: ToolCallRecord) -> None:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        values = [getattr(rec, c) for c in _COLUMNS]
        values[_COLUMNS.index("cached")] = int(rec.cached)
        self._execute(
            f"INSERT INTO tool_calls ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values
        )

    def calls(
        self,
        *,
        plan: str | None = None,
        tool: str | None = None,
        run_id: str | None = None,
        succeeded_only: bool = False,
    ) -> list[ToolCallRecord]:
        """Recorded calls, oldest first, filtered by plan, tool, run and outcome."""
        if not self.exists():
            return []
        where, params = _equal({"plan": plan, "tool": tool, "run_id": run_id})
        if succeeded_only:
            where.append("outcome = 'succeeded' AND cached = 0")
        sql = f"SELECT {', '.join(_COLUMNS)} FROM tool_calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._query(sql + " ORDER BY started_at", params)
        return [_record(row) for row in rows]

    def latest_calls(
        self,
        *,
        tool: str,
        plan: str | None = None,
        workstream: str | None = None,
        task: str | None = None,
        succeeded_only: bool = False,
        limit: int = 500,
    ) -> list[ToolCallRecord]:
        """The ``limit`` newest calls of ``tool`` that ran (cache hits left out), newest
        first; of one task when ``plan``, ``workstream`` and ``task`` are given."""
        if not self.exists():
            return []
        where, params = _equal({"tool": tool, "plan": plan, "workstream": workstream, "task": task})
        where.append("cached = 0")
        if succeeded_only:
            where.append("outcome = 'succeeded'")
        sql = f"SELECT {', '.join(_COLUMNS)} FROM tool_calls WHERE {' AND '.join(where)}"
        rows = self._query(sql + f" ORDER BY started_at DESC LIMIT {int(limit)}", params)
        return [_record(row) for row in rows]

    def probe(self) -> None:
        """A cheap real query, for the worker's ``/readyz``: raises if the store cannot be
        opened or read now."""
        self._query("SELECT 1 FROM tool_calls LIMIT 1", [])

    def record_agent(self, rec: AgentRunRecord) -> None:
        values: list[Any] = [getattr(rec, c) for c in _AGENT_COLUMNS]
        values[_AGENT_COLUMNS.index("signature")] = json.dumps(list(rec.signature))
        values[_AGENT_COLUMNS.index("fixed")] = None if rec.fixed is None else int(rec.fixed)
        placeholders = ", ".join("?" for _ in _AGENT_COLUMNS)
        self._execute(
            f"INSERT INTO agent_runs ({', '.join(_AGENT_COLUMNS)}) VALUES ({placeholders})",
            values,
        )

    def agent_runs(
        self, *, plan: str | None = None, fixed_only: bool = False, newest: int | None = None
    ) -> list[AgentRunRecord]:
        """Recorded agent conversations, oldest first (the ``newest`` ones only, if given)."""
        if not self.exists():
            return []
        where, params = _equal({"plan": plan})
        if fixed_only:
            where.append("fixed = 1")
        sql = f"SELECT {', '.join(_AGENT_COLUMNS)} FROM agent_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC"
        if newest is not None:
            sql += f" LIMIT {int(newest)}"
        rows = self._query(sql, params)
        return [_agent_record(row) for row in reversed(rows)]

    def cache_get(self, key: str, *, ttl_s: float, now: float) -> CacheEntry | None:
        """The result stored under ``key`` less than ``ttl_s`` seconds before ``now``."""
        rows = self._query("SELECT result, created_at FROM cache WHERE key = ?", [key])
        if not rows:
            return None
        result, created_at = rows[0]
        if now - created_at >= ttl_s:
            return None
        return CacheEntry(result=json.loads(result), created_at=created_at)

    def cache_put(
        self, key: str, *, tool: str, result: dict[str, Any], ttl_s: float, now: float
    ) -> None:
        """Store a successful result, and drop entries past the TTL they were stored with."""
        self._execute(
            "INSERT INTO cache (key, tool, result, created_at, expires_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET tool = excluded.tool, result = excluded.result,"
            " created_at = excluded.created_at, expires_at = excluded.expires_at",
            [key, tool, json.dumps(result, default=str), now, now + ttl_s],
        )
        self._execute("DELETE FROM cache WHERE expires_at < ?", [now])

    def runs(self) -> dict[str, float]:
        """Every run with recorded calls, and when its last call ended (seconds since epoch)."""
        if not self.exists():
            return {}
        rows = self._query(
            "SELECT run_id, MAX(started_at + duration_s) FROM tool_calls GROUP BY run_id", []
        )
        return {run_id: float(last) for run_id, last in rows}

    def remove_run(self, run_id: str) -> None:
        """Forget the calls of ``run_id`` (its agent conversations: the memory of its fixes
        is kept, as the fixes stay useful after the run is gone)."""
        self._execute("DELETE FROM tool_calls WHERE run_id = ?", [run_id])

    def cache_prune(self, *, created_before: float, now: float, dry_run: bool = False) -> int:
        """Drop cache entries created before ``created_before`` or expired; how many."""
        if not self.exists():
            return 0
        where = "WHERE created_at < ? OR expires_at < ?"
        (count,) = self._query(f"SELECT COUNT(*) FROM cache {where}", [created_before, now])[0]
        if not dry_run:
            self._execute(f"DELETE FROM cache {where}", [created_before, now])
        return int(count)

    @abstractmethod
    def sizes(self) -> dict[str, int]:
        """Bytes the tool-call rows and the cache take: ``{"history": ..., "cache": ...}``."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement in a transaction of its own. ``?`` marks each parameter."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""


def _equal(columns: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """``column = ?`` conditions and their parameters, for the values that are given."""
    given = {c: v for c, v in columns.items() if v is not None}
    return [f"{c} = ?" for c in given], list(given.values())


def _record(row: Sequence[Any]) -> ToolCallRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["cached"] = bool(values["cached"])
    return ToolCallRecord(**values)


def _agent_record(row: Sequence[Any]) -> AgentRunRecord:
    values = dict(zip(_AGENT_COLUMNS, row, strict=True))
    values["signature"] = tuple(json.loads(values["signature"]))
    values["fixed"] = None if values["fixed"] is None else bool(values["fixed"])
    return AgentRunRecord(**values)


class _SQLiteStore(HistoryStore):
    """An SQLite file shared by the processes of one machine.

    WAL mode lets readers run beside a writer; a writer waits up to ``_BUSY_TIMEOUT`` for
    another's transaction, and each transaction is one statement, so waits are short.
    Each thread keeps its connection open: closing the last connection to a WAL file
    checkpoints it to disk, which would cost a sync per call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.location = str(self.path)
        self._ready = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._init()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast
            self._local.conn = conn
        with conn:  # one transaction: committed, or rolled back on error
            yield conn

    def _init(self) -> None:
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT)
            try:
                conn.execute("PRAGMA journal_mode=WAL")  # kept in the file, for every process
                with conn:
                    for statement in _SCHEMA:
                        conn.execute(statement)
            finally:
                conn.close()
            self._ready = True

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._connect() as conn:
            conn.execute(sql, params)

    def probe(self) -> None:
        # A connection keeps a removed file readable: that is no history for anyone else.
        if self._ready and not self.exists():
            raise FileNotFoundError(f"the history database {self.path} was removed")
        super().probe()

    def sizes(self) -> dict[str, int]:
        if not self.exists():
            return {"history": 0, "cache": 0}
        try:  # pages per table and index, where SQLite was built with the dbstat table
            rows = self._query("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name", [])
        except sqlite3.OperationalError:
            files = [self.path, self.path.with_name(self.path.name + "-wal")]
            return {"history": sum(p.stat().st_size for p in files if p.exists()), "cache": 0}
        out = {"history": 0, "cache": 0}
        for name, size in rows:
            table = "cache" if name.startswith(("cache", "sqlite_autoindex_cache")) else "history"
            out[table] += int(size)
        return out

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            return list(conn.execute(sql, params).fetchall())


class _PostgresStore(HistoryStore):
    """A PostgreSQL database, for workers on several machines (needs ``psycopg``).

    One connection per store, used by one thread at a time; a broken connection is
    replaced on the next operation.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.location = without_password(dsn)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                import psycopg
            except ImportError:
                raise RuntimeError(
                    "a postgresql:// history needs psycopg: pip install 'towline[postgres]'"
                ) from None
            conn = psycopg.connect(self.dsn, autocommit=True)
            with conn.transaction():
                # One creator at a time: CREATE ... IF NOT EXISTS races between workers.
                conn.execute("SELECT pg_advisory_xact_lock(7305661)")
                for statement in _SCHEMA:
                    conn.execute(statement)
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: Sequence[Any], *, fetch: bool) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            try:
                cur = conn.execute(sql.replace("?", "%s"), list(params))
                return list(cur.fetchall()) if fetch else []
            except Exception:
                if conn.broken:
                    self._conn = None
                raise

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self._run(sql, params, fetch=False)

    def sizes(self) -> dict[str, int]:
        rows = self._query(
            "SELECT pg_total_relation_size('tool_calls'), pg_total_relation_size('cache')", []
        )
        return {"history": int(rows[0][0]), "cache": int(rows[0][1])}

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._run(sql, params, fetch=True)


def without_password(dsn: str) -> str:
    """The DSN as it may be printed: ``postgresql://user:***@host/db``."""
    scheme, sep, rest = dsn.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
