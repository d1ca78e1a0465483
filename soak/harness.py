"""The soak itself: load, people, faults, the drain, and what is collected for the report."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from tests.helpers import diff_of, make_repo
from tests.workerproc import wait_status

from soak import shapes
from soak.cluster import Cluster, Webhook
from soak.faults import Fault, schedule
from soak.shapes import Paths, Shaped
from towline.plan.load import check_data
from towline.starter import api
from towline.state import FINISHED, Answer, RunState
from towline.worker.client import connect


@dataclass
class Options:
    minutes: float
    seed: int
    drain_s: float
    wide: int
    in_flight: int = 6  # runs kept going at once (besides the wide ones)


@dataclass
class RunRec:
    shaped: Shaped
    started_at: float = 0.0
    ended_at: float | None = None
    status: str | None = None  # towline's status once it ended
    tasks: dict[str, str] = field(default_factory=dict)  # "ws.task" -> status
    answered: list[str] = field(default_factory=list)  # what the scripted people did
    note: str | None = None
    reason: str | None = None  # towline's reason for how it ended


@dataclass
class FaultRec:
    fault: Fault
    at: float = 0.0  # wall clock
    target: str = ""
    undone_at: float | None = None
    detail: str = ""


@dataclass
class Soak:
    opts: Options
    root: Path
    cluster: Cluster
    webhook: Webhook
    paths: Paths
    client: Client | None = None
    runs: dict[str, RunRec] = field(default_factory=dict)
    faults: list[FaultRec] = field(default_factory=list)
    rss: list[tuple[float, dict[str, int | None]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # a log of what happened
    load_started: float = 0.0
    load_ended: float = 0.0
    drain_ended: float = 0.0
    undo: dict[int, tuple[asyncio.Task[None], Callable[[], Awaitable[None]]]] = field(
        default_factory=dict
    )
    seq: int = 0
    operators: list[asyncio.Task[None]] = field(default_factory=list)
    largest: dict[str, Any] = field(default_factory=dict)
    leftovers: list[tuple[int, str]] = field(default_factory=list)

    def log(self, text: str) -> None:
        stamp = time.time() - (self.load_started or time.time())
        line = f"[{stamp:7.1f}s] {text}"
        self.events.append(line)
        print(line, flush=True)

    # ------------------------------------------------------------------ runs

    def next_id(self, shape: str) -> str:
        self.seq += 1
        return f"soak-{self.opts.seed}-{self.seq:04d}-{shape}"

    async def start(self, shaped: Shaped) -> None:
        """Start a run (again and again while the server is away: one id, one run)."""
        assert self.client is not None
        rec = RunRec(shaped, started_at=time.time())
        self.runs[shaped.run_id] = rec
        spec = check_data(shaped.plan)
        for attempt in range(120):
            try:
                await api.start_run(
                    self.client,
                    spec,
                    plan_dir=self.paths.plan_dir,
                    task_queue=self.cluster.queue,
                    run_id=shaped.run_id,
                )
                break
            except api.RunExists:
                break
            except Exception as e:  # the server is away: try again
                if attempt == 0:
                    self.log(f"start {shaped.run_id}: {type(e).__name__}: {e}; trying again")
                await asyncio.sleep(1.0)
        else:
            rec.note = "never started: the server did not take it in 2 minutes"
        if shaped.pause_at:
            self.operators.append(asyncio.create_task(self.operator(rec)))

    def open_runs(self) -> list[RunRec]:
        return [r for r in self.runs.values() if r.ended_at is None and r.note is None]

    async def starter(self, rng: random.Random) -> None:
        """Keep ``in_flight`` runs going; a wide run now and then."""
        names = list(shapes.SHAPES)
        weights = list(shapes.SHAPES.values())
        load_s = self.opts.minutes * 60
        wide_at = [
            load_s * 0.25 + k * 420.0 for k in range(10) if load_s * 0.25 + k * 420.0 < load_s - 60
        ]
        while True:
            now = time.time() - self.load_started
            if wide_at and now >= wide_at[0] and self.opts.wide:
                wide_at.pop(0)
                rid = self.next_id("wide")
                self.log(f"a wide run: {rid} ({self.opts.wide} workstreams)")
                await self.start(shapes.wide(rid, self.opts.wide, self.paths))
            if len([r for r in self.open_runs() if r.shaped.shape != "wide"]) < self.opts.in_flight:
                shape = rng.choices(names, weights)[0]
                await self.start(shapes.make(shape, self.next_id(shape), rng, self.paths))
            await asyncio.sleep(rng.uniform(0.5, 2.0))

    async def operator(self, rec: RunRec) -> None:
        """Pause the run a moment after its start, resume it a while later."""
        assert self.client is not None
        rid = rec.shaped.run_id
        await asyncio.sleep(rec.shaped.pause_at)
        if not await self._until(rec, lambda: api.pause_run(self.client, rid, by="soak"), tries=20):  # type: ignore[arg-type]
            return
        rec.answered.append("paused")
        await asyncio.sleep(rec.shaped.pause_for)
        if await self._until(rec, lambda: api.resume_run(self.client, rid, by="soak"), tries=10**6):  # type: ignore[arg-type]
            rec.answered.append("resumed")

    async def _until(self, rec: RunRec, call: Callable[[], Awaitable[Any]], tries: int) -> bool:
        for _ in range(tries):
            if rec.ended_at is not None:
                return False
            try:
                await call()
                return True
            except api.Refused as e:
                if "ended" in str(e) or "finished" in str(e):
                    return False
            except Exception:
                pass
            await asyncio.sleep(1.0)
        return False

    async def people(self) -> None:
        """Answer what waits for a person: approvals as each run's script says; anything
        else waiting (not expected in these shapes) is skipped, and noted."""
        while True:
            await asyncio.sleep(1.0)
            for rec in self.open_runs():
                if rec.shaped.shape != "wide":
                    with contextlib.suppress(Exception):
                        await self.answer(rec)

    async def answer(self, rec: RunRec) -> None:
        assert self.client is not None
        rid = rec.shaped.run_id
        handle = self.client.get_workflow_handle(rid)
        run = await asyncio.wait_for(handle.query("status", result_type=RunState), 5)
        if run.status != "waiting":
            return
        st = await asyncio.wait_for(api.get_status(self.client, rid), 10)
        for wid, ws in st.workstreams.items():
            for tid, t in ws.tasks.items():
                what: Answer
                if t.status != "waiting":
                    continue
                if t.waiting_for == "approval":
                    what = "approve" if rec.shaped.approve else "reject"
                elif t.waiting_for == "operator":
                    what = "skip"
                else:
                    continue
                await api.answer(self.client, rid, f"{wid}.{tid}", what, by="soak")
                rec.answered.append(f"{what} {wid}.{tid} ({t.waiting_for})")
                if t.waiting_for != "approval":
                    self.log(f"{rid}: {wid}.{tid} waited for {t.waiting_for}: {what}")

    async def monitor(self) -> None:
        """Notice runs that ended, and read their final state once."""
        assert self.client is not None
        while True:
            await asyncio.sleep(2.0)
            for rec in self.open_runs():
                rid = rec.shaped.run_id
                try:
                    desc = await self.client.get_workflow_handle(rid).describe()
                except Exception:
                    continue
                if desc.status == WorkflowExecutionStatus.RUNNING:
                    continue
                with contextlib.suppress(Exception):
                    await self.finish(rec)

    async def finish(self, rec: RunRec) -> None:
        assert self.client is not None
        st = await asyncio.wait_for(api.get_status(self.client, rec.shaped.run_id), 60)
        if st.status not in FINISHED:
            return
        rec.status = st.status
        rec.reason = st.reason
        rec.ended_at = st.ended_at.timestamp() if st.ended_at else time.time()
        for wid, ws in st.workstreams.items():
            if ws.tasks:
                for tid, t in ws.tasks.items():
                    rec.tasks[f"{wid}.{tid}"] = t.status
            else:  # a wide run: its workstreams' summaries only (one task each)
                rec.tasks[f"{wid}.t"] = ws.status
        if rec.status not in rec.shaped.expect:
            expected = "/".join(sorted(rec.shaped.expect))
            self.log(f"{rec.shaped.run_id} ended {rec.status} (not {expected}): {st.reason}")

    async def sampler(self) -> None:
        while True:
            self.rss.append((time.time(), self.cluster.sample_rss()))
            await asyncio.sleep(5.0)

    # ------------------------------------------------------------------ faults

    async def injector(self, plan: list[Fault]) -> None:
        for fault in plan:
            delay = self.load_started + fault.at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            rec = FaultRec(fault, at=time.time(), target=fault.target)
            try:
                await self.inject(rec)
            except Exception as e:
                rec.detail = f"could not inject: {type(e).__name__}: {e}"
            self.faults.append(rec)
            self.log(f"fault {fault.kind} {rec.target} {rec.detail}".rstrip())

    def _target(self, wanted: str) -> str | None:
        """``wanted`` if it is up, else another worker that is; never the last one up."""
        up = [
            n
            for n in self.cluster.workers
            if self.cluster.alive(n) and not self.cluster.workers[n].stopped
        ]
        if len(up) < 2:
            return None
        return wanted if wanted in up else up[0]

    def _later(self, rec: FaultRec, hold: float, restore: Callable[[], Awaitable[None]]) -> None:
        async def undo() -> None:
            await asyncio.sleep(hold)
            await restore()
            rec.undone_at = time.time()

        key = id(rec)
        task = asyncio.create_task(undo())
        self.undo[key] = (task, restore)
        task.add_done_callback(lambda _: self.undo.pop(key, None))

    async def inject(self, rec: FaultRec) -> None:
        f, c = rec.fault, self.cluster
        if f.kind in ("worker_kill", "worker_stop"):
            name = self._target(f.target)
            if name is None:
                rec.detail = "skipped: fewer than two workers up"
                return
            rec.target = name
            if f.kind == "worker_kill":
                c.kill_worker(name)

                async def restart() -> None:
                    if not c.alive(name):
                        await asyncio.to_thread(c.start_worker, name)

                self._later(rec, f.hold, restart)
            else:
                c.stop_worker(name)

                async def cont() -> None:
                    c.cont_worker(name)

                self._later(rec, f.hold, cont)
            rec.detail = f"for {f.hold:.1f}s"
        elif f.kind == "server_kill":
            c.kill_server()
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(c.start_server)
            rec.undone_at = time.time()
            rec.detail = f"down {rec.undone_at - rec.at:.1f}s"
        elif f.kind == "tool_hang":
            rid = self.next_id("hang")
            rec.detail = rid
            await self.start(shapes.hang(rid, self.paths))
        elif f.kind == "store_full":
            taken = await asyncio.to_thread(c.fill_store)

            async def free() -> None:
                c.free_store()

            self._later(rec, f.hold, free)
            rec.detail = f"{taken // 2**20} MiB taken for {f.hold:.0f}s"
        elif f.kind == "webhook_slow":
            self.webhook.slow_for = 20.0

            async def fast() -> None:
                self.webhook.slow_for = 0.0

            self._later(rec, f.hold, fast)
            rec.detail = f"answers after 20s, for {f.hold:.0f}s"
        elif f.kind == "webhook_dead":
            self.webhook.stop()

            async def revive() -> None:
                if self.webhook.server is None:
                    self.webhook.start()

            self._later(rec, f.hold, revive)
            rec.detail = f"not listening for {f.hold:.0f}s"

    async def heal(self) -> None:
        """Undo every fault still in force (the load has ended)."""
        for key, (task, restore) in list(self.undo.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await restore()
            for rec in self.faults:
                if id(rec) == key and rec.undone_at is None:
                    rec.undone_at = time.time()
        self.undo.clear()


def prepare(root: Path, webhook: Webhook) -> Paths:
    """Two source repositories and a patch for each, the ledger, the webhook's URL."""
    plan_dir = root / "plan"
    (plan_dir / "patches").mkdir(parents=True)
    repos = {}
    for name in ("a", "b"):
        src = make_repo(root / "repos" / name, {"README.md": f"repo {name}\n", "changes.txt": ""})
        patch = diff_of(src, {"README.md": f"repo {name}\npatched\n"}, root / "scratch" / name)
        (plan_dir / "patches" / f"{name}.diff").write_text(patch)
        repos[name] = f"file://{src}"
    return Paths(ledger=root / "ledger", plan_dir=plan_dir, repos=repos, webhook=webhook.url)


async def run(opts: Options, root: Path) -> Soak:
    """The whole soak; every process it started is stopped before it returns or raises."""
    webhook = Webhook()
    cluster = Cluster(root=root, queue=f"soak-{uuid.uuid4().hex[:8]}")
    soak = Soak(opts, root, cluster, webhook, prepare(root, webhook))
    background: list[asyncio.Task[None]] = []
    try:
        cluster.mount_store()
        webhook.start()
        await asyncio.to_thread(cluster.start_server)
        cluster.start_workers()
        for w in cluster.workers.values():
            assert w.proc is not None
            await wait_status(w.proc, "/readyz", 200, timeout=60)
        soak.client = await connect(cluster.address)
        load_s = opts.minutes * 60
        plan = schedule(opts.seed, load_s, list(cluster.workers))
        soak.load_started = time.time()
        soak.log(f"load for {load_s:.0f}s, {len(plan)} faults scheduled, seed {opts.seed}")
        rng = random.Random(opts.seed + 1)
        background = [
            asyncio.create_task(soak.people()),
            asyncio.create_task(soak.monitor()),
            asyncio.create_task(soak.sampler()),
        ]
        load = [asyncio.create_task(soak.starter(rng)), asyncio.create_task(soak.injector(plan))]
        await asyncio.sleep(load_s)
        for t in load:
            t.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        soak.load_ended = time.time()
        soak.log(f"load ended: {len(soak.runs)} runs started; healing the faults still in force")
        if cluster.server is None or cluster.server.poll() is not None:
            await asyncio.to_thread(cluster.start_server)
        await soak.heal()
        for name in cluster.workers:
            if not cluster.alive(name):
                cluster.start_worker(name)
        deadline = time.time() + opts.drain_s
        while soak.open_runs() and time.time() < deadline:
            await asyncio.sleep(2.0)
        soak.drain_ended = time.time()
        soak.log(f"drain ended: {len(soak.open_runs())} runs still open")
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        background = []
        await collect_open(soak)
        soak.largest = await largest_history(soak.client)
        return soak
    finally:
        for t in [*background, *soak.operators]:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        webhook.stop()
        soak.leftovers = cluster.close()


async def collect_open(soak: Soak) -> None:
    """For each run still open after the drain: ended meanwhile, waiting for a person
    (what for), stuck (running), or lost (the server does not know it)."""
    assert soak.client is not None
    for rec in soak.open_runs():
        rid = rec.shaped.run_id
        try:
            await soak.finish(rec)
            if rec.ended_at is not None:
                continue
            st = await asyncio.wait_for(api.get_status(soak.client, rid), 30)
        except api.UnknownRun:
            rec.note = "lost: the server does not know it"
            continue
        except Exception as e:
            rec.note = f"stuck: no status ({type(e).__name__}: {e})"
            continue
        waits = [
            f"{wid}.{tid} waits for {t.waiting_for}"
            for wid, ws in st.workstreams.items()
            for tid, t in ws.tasks.items()
            if t.status == "waiting"
        ]
        rec.note = ("waiting for a person: " + ", ".join(waits)) if waits else f"stuck: {st.status}"


async def largest_history(client: Client) -> dict[str, Any]:
    best: dict[str, Any] = {"workflow_id": None, "events": 0, "workflows": 0}
    async for wf in client.list_workflows():
        best["workflows"] += 1
        if wf.history_length > best["events"]:
            best.update(workflow_id=wf.id, events=wf.history_length)
    return best
