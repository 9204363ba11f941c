"""Benchmark: N DistrictSync resources provisioned by the real operator (kopf) on the emulated API.

One run, one process (kmock's emulator and the kopf engine share the event loop, as in the
operator tests; see tests/support/kube.py), measures:

(1) provisioning a burst of N districts (or ``--rate`` per second): the time until every
    child exists (the last CronJob), until every district has Ready=True, the throughput and
    the per-district latency from its create to its CronJob and to Ready. The benchmark plays
    the Deployment controller: every SFTP Deployment gets ``readyReplicas: 1`` (and its
    ``observedGeneration``) as soon as it appears on a watch (``--ready-after``: S s later);
(2) memory: the process's peak RSS (ru_maxrss: Python, the libraries, the emulator with its
    objects, their history and its request log, the operator, the harness's watches), the RSS
    before the operator started, and the peak of a child process whose emulator served the
    same requests again without any operator (same objects, versions and request log), so
    that the operator's share is the difference;
(3) an idle resync: once no operator write happened for ``--settle`` s, a window covering
    one resync of every district (``--resync``); the API writes in it (target: zero) and the
    reads per district resync;
(4) where the time goes: N x Material.generate() (the keys a district needs) alone, in the
    same process, as the floor of provisioning, and the handlers' CPU by function (operator
    functions wrapped for the run, see Breakdown; ``--no-breakdown`` leaves them alone).

The emulator is the harness's (tests.support.kube.KubeEmulator) with two fixes in this
process only, because as the tests use it its cost grows with the run and it shares the event
loop (and the GIL) with kopf: kmock looked each request's reaction up by scanning the whole
request log (O(requests^2) over a run) and read one object by scanning every object
(see fast_reaction_matching and IndexedEmulator; ``--stock-emulator`` keeps them).

    python3 benchmarks/operator_fleet.py [--districts 1000] [--resync 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import attrs
import kmock
import kopf
import pytest
import yarl

from tests.support.kube import (
    HARNESS_USER_AGENT,
    ApiRequest,
    Cluster,
    KubeApiError,
    KubeEmulator,
    running_operator,
    wait_for,
)
from tests.support.operator import API, KIND, NAMESPACE, condition, district
from visitor_sync.sftp import keys
from visitor_sync_operator import handlers
from visitor_sync_operator import main as operator_main
from visitor_sync_operator.builders import secrets
from visitor_sync_operator.kube import Kube
from visitor_sync_operator.main import build_registry
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.settings import OperatorSettings

PROGRESS_EVERY = 15.0  # seconds between progress lines on stderr
CREATE_CONCURRENCY = 32
SHOWN_WARNINGS = 10


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """The current resident set size of this process."""
    return _proc_status_mb("VmRSS")


def hwm_mb() -> float:
    """Peak RSS of this process's memory since its exec (a child's ru_maxrss is not: Linux
    carries the parent's peak over fork and exec)."""
    return _proc_status_mb("VmHWM")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the emulated cluster, outside pytest ------------------------------------------------


def fast_reaction_matching() -> None:
    """Make kmock find the reaction to a request in O(1) instead of O(requests logged so far).

    kmock 0.8's ``RawHandler._handle`` asks ``request in payload._source`` for each reaction
    in priority order, and ``View.__contains__`` answers by iterating the whole request log
    through the view's filters: every request costs (requests so far) x (reactions tried)
    criteria checks, so a run costs O(requests^2). With the stock code, 16 districts (about
    1,000 requests) spent ~190 of 200 CPU-seconds there and the emulator starved kopf (its
    PATCHes timed out); 1,000 districts (~100,000 requests) cannot finish. The chains that the
    emulator's reactions use (Filter and Priority views down to the root) are answered here
    by applying their criteria to the one request, which is what the scan computes; any other
    view (slices, groups, exclusions) keeps kmock's own answer. This process only.
    """
    from kmock._internal import dsl, rendering

    stock = dsl.View.__contains__

    def contains(self: dsl.View, item: Any) -> bool:
        if not isinstance(item, rendering.Request):
            return stock(self, item)
        node = self
        while True:
            kind = type(node)
            if kind is dsl.Filter:
                if not node.criteria(item):
                    return False
                node = node._source
            elif kind is dsl.Priority:
                node = node._source
            elif isinstance(node, dsl.Root):
                return any(request is item for request in reversed(node._requests))
            else:
                return stock(self, item)

    dsl.View.__contains__ = contains  # type: ignore[method-assign]


@attrs.define(kw_only=True)
class IndexedEmulator(KubeEmulator):
    """The harness's emulator, with GET and LIST costing O(1) and O(objects of the resource).

    kmock's GET (``_serve_fetch``) scans every stored object for the one requested, and the
    harness's LIST every object of every resource: with N=1000 (~12,000 objects) a GET took
    13.5 ms and a LIST of Jobs 18.8 ms of CPU (1.2 and 1.4 ms with 100 objects), on the one
    event loop that also runs kopf. A real API server reads from indexed storage; so does this
    (same answers: the key of a GET, the objects of the resource in creation order).
    """

    _index: dict[kmock.resource, dict[tuple[Any, ...], None]] = attrs.field(
        factory=dict, init=False)

    def _store(self, key: tuple[kmock.resource, str | None, str], body: dict[str, Any]) -> None:
        super()._store(key, body)
        self._index.setdefault(key[0], {})[key] = None

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            obj = self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    def _serves(self, resource: kmock.resource) -> bool:
        # kmock's _get_resources() scans every object too: the declared ones or any stored.
        return resource in self.resources or resource in self._index

    def _objects_of(self, resource: kmock.resource) -> Iterable[Any]:
        return [self.objects[key] for key in self._index.get(resource, {})]


@contextlib.asynccontextmanager
async def emulated_cluster(stock: bool = False) -> AsyncIterator[Cluster]:
    """What the ``cluster`` fixture of tests/conftest.py makes, without pytest."""
    with tempfile.TemporaryDirectory(prefix="vs-fleet-") as scratch, \
            pytest.MonkeyPatch.context() as patcher:
        emulator = KubeEmulator() if stock else IndexedEmulator()
        async with emulator, kmock.Server(emulator), \
                Cluster.open(emulator, Path(scratch), patcher) as cluster:
            await cluster.create({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": NAMESPACE}})
            yield cluster


def emulator_size(cluster: Cluster) -> dict[str, int]:
    objects = [obj for obj in cluster.emulator.objects.values() if not obj.deleted]
    return {"objects": len(objects),
            "versions": sum(len(obj.history) for obj in cluster.emulator.objects.values()),
            "requests": len(cluster.emulator)}


class RequestLog:
    """The emulator's request log, read from a position on (kmock keeps it in ``_requests``;
    iterating the emulator itself walks the whole log), keeping nothing."""

    def __init__(self, cluster: Cluster) -> None:
        self.log: list[kmock.Request] = cluster.emulator._requests
        self.cursor = 0

    def mark(self) -> int:
        return len(self.log)

    def since(self, start: int, end: int | None = None) -> Iterator[ApiRequest]:
        """The operator's requests (not the harness's, no watch streams) from ``start``."""
        for request in self.log[start:end]:
            parsed = ApiRequest.from_kmock(request)
            if not parsed.by_harness and not parsed.watch:
                yield parsed

    def new(self) -> list[ApiRequest]:
        """The operator's requests since the previous call."""
        start, self.cursor = self.cursor, len(self.log)
        return list(self.since(start, self.cursor))

    def dump(self, path: Path) -> None:
        """Every request but watches, to replay in another emulator (emulator_only)."""
        with path.open("w") as out:
            for request in self.log:
                if request.action == kmock.action.WATCH:
                    continue
                content_type = next((value for key, value in request.headers.items()
                                     if key.lower() == "content-type"), "")
                out.write(json.dumps({"method": request.method.value,
                                      "url": request.url.raw_path_qs,
                                      "type": content_type, "body": request.text}) + "\n")


# -- where the handlers' time goes (wrappers, installed for the run only) ---------------


class Breakdown:
    """Calls, wall and thread-CPU seconds of a few operator functions, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats: dict[str, list[float]] = {}
        self._restore: list[tuple[Any, str, Any]] = []

    def _record(self, name: str, wall: float, cpu: float) -> None:
        with self._lock:
            entry = self.stats.setdefault(name, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += wall
            entry[2] += cpu

    def timed(self, name: str | Callable[..., str], function: Callable[..., Any]
              ) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                label = name(*args, **kwargs) if callable(name) else name
                self._record(label, time.perf_counter() - wall, time.thread_time() - cpu)
        return wrapper

    def replace(self, owner: Any, attribute: str, name: str | Callable[..., str],
                *, classmethod_: bool = False) -> None:
        original = owner.__dict__[attribute]
        self._restore.append((owner, attribute, original))
        if classmethod_:
            setattr(owner, attribute, classmethod(self.timed(name, original.__func__)))
        else:
            setattr(owner, attribute, self.timed(name, original))

    def install(self) -> None:
        # kopf's change and timer handlers call main.reconcile; the Deployment event handler
        # calls handlers.sftp_server_changed, which calls handlers.reconcile via refresh().
        self.replace(operator_main, "reconcile", "reconcile (change/timer handler)")
        self.replace(handlers, "sftp_server_changed", "sftp_server_changed (Deployment event)")
        self.replace(handlers, "reconcile", "  reconcile via refresh()")
        self.replace(secrets.Material, "generate", "Material.generate", classmethod_=True)

        def key_kind(private_openssh: bytes, *_: Any, **__: Any) -> str:
            kind = "RSA-3072" if len(private_openssh) > 1000 else "ed25519"
            return f"public_line_of ({kind} private key load)"

        self.replace(secrets, "public_line_of", key_kind)
        self.replace(keys, "public_line_of", key_kind)
        for method in ("get", "list", "create", "patch"):
            self.replace(Kube, method, f"Kube.{method} (HTTP, sync client)")
        self.replace(Kube, "_resource", "  Kube._resource (discovery lookup)")

    def uninstall(self) -> None:
        for owner, attribute, original in reversed(self._restore):
            setattr(owner, attribute, original)
        self._restore.clear()

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {name: list(entry) for name, entry in self.stats.items()}


def minus(after: dict[str, list[float]], before: dict[str, list[float]]
          ) -> dict[str, list[float]]:
    return {name: [a - b for a, b in zip(entry, before.get(name, [0, 0.0, 0.0]), strict=True)]
            for name, entry in after.items()}


# -- the harness's controllers: watches ---------------------------------------------------


async def watch(session: aiohttp.ClientSession, path: str,
                on_event: Callable[[dict[str, Any]], Awaitable[None]],
                established: asyncio.Event) -> None:
    """Follow a watch stream (newline-delimited JSON events) until cancelled."""
    async with session.get(path, params={"watch": "true"}) as response:
        response.raise_for_status()
        established.set()
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await on_event(json.loads(line))


@dataclass
class Fleet:
    """What the watches saw, in perf_counter seconds."""

    names: list[str]
    ready_after: float = 0.0  # seconds from a Deployment's (new generation) to its pod's Ready
    created: dict[str, float] = field(default_factory=dict)
    cron_jobs: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    deployments_made_ready: int = 0
    ready_lost: Counter[str] = field(default_factory=Counter)
    _starting: dict[tuple[str, int], asyncio.Task[None]] = field(default_factory=dict)

    async def deployment_event(self, cluster: Cluster, event: dict[str, Any]) -> None:
        """The Deployment controller and kubelet: the pod is up ``ready_after`` s after the
        Deployment (or its new generation) appears."""
        if event.get("type") not in {"ADDED", "MODIFIED"}:
            return
        body = event["object"]
        metadata, status = body["metadata"], body.get("status") or {}
        generation = metadata.get("generation", 1)
        if (status.get("readyReplicas") or 0) >= 1 and \
                status.get("observedGeneration") == generation:
            return
        if not self.ready_after:
            await self._make_ready(cluster, metadata["name"], generation)
        elif (metadata["name"], generation) not in self._starting:
            self._starting[metadata["name"], generation] = asyncio.create_task(
                self._make_ready(cluster, metadata["name"], generation, self.ready_after))

    async def _make_ready(self, cluster: Cluster, name: str, generation: int,
                          delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(KubeApiError):  # deleted meanwhile
            await cluster.patch_status(
                "apps/v1", "Deployment", name,
                {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                 "updatedReplicas": 1, "observedGeneration": generation},
                namespace=NAMESPACE)
            self.deployments_made_ready += 1

    def stop(self) -> list[asyncio.Task[None]]:
        for task in self._starting.values():
            task.cancel()
        return list(self._starting.values())

    async def cron_job_event(self, event: dict[str, Any]) -> None:
        name = event["object"]["metadata"]["name"].removesuffix("-import")
        if event.get("type") == "ADDED":
            self.cron_jobs.setdefault(name, time.perf_counter())

    async def district_event(self, event: dict[str, Any]) -> None:
        body = event["object"]
        name = body["metadata"]["name"]
        if condition(body, "Ready").get("status") == "True":
            self.ready.setdefault(name, time.perf_counter())
        elif name in self.ready and event.get("type") != "DELETED":
            self.ready_lost[name] += 1  # Ready went back to False: nothing here undoes it


@contextlib.asynccontextmanager
async def controllers(cluster: Cluster, fleet: Fleet) -> AsyncIterator[None]:
    """Watches of Deployments (made ready), CronJobs and DistrictSyncs (timed)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(base_url=cluster.url, timeout=timeout,
                                     headers={"User-Agent": HARNESS_USER_AGENT}) as session:
        streams = [
            (cluster.path("apps/v1", "Deployment", namespace=NAMESPACE),
             functools.partial(fleet.deployment_event, cluster)),
            (cluster.path("batch/v1", "CronJob", namespace=NAMESPACE), fleet.cron_job_event),
            (cluster.path(API, KIND, namespace=NAMESPACE), fleet.district_event),
        ]
        flags = [asyncio.Event() for _ in streams]
        tasks = [asyncio.create_task(watch(session, path, handler, flag))
                 for (path, handler), flag in zip(streams, flags, strict=True)]
        try:
            await wait_for(lambda: all(flag.is_set() for flag in flags)
                           or any(task.done() for task in tasks), timeout=10)
            for task in tasks:
                if task.done():
                    task.result()  # a watch that failed to start
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *fleet.stop(), return_exceptions=True)


# -- the run --------------------------------------------------------------------------------


async def create_fleet(cluster: Cluster, fleet: Fleet, rate: float) -> None:
    """POST every DistrictSync: a burst (CREATE_CONCURRENCY at a time) or ``rate`` per s."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)
    start = time.perf_counter()

    async def create(index: int, name: str) -> None:
        if rate:
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        async with gate:
            fleet.created[name] = time.perf_counter()
            await cluster.create(district(name))

    await asyncio.gather(*(create(i, name) for i, name in enumerate(fleet.names)))


async def settle(log: RequestLog, quiet: float, cap: float) -> float | None:
    """Seconds until the operator made no write for ``quiet`` s (None: not within ``cap``)."""
    start = last_write = time.perf_counter()
    while True:
        if any(r.is_write for r in log.new()):
            last_write = time.perf_counter()
        now = time.perf_counter()
        if now - last_write >= quiet:
            return now - start
        if now - start > cap:
            return None
        await asyncio.sleep(0.25)


#: Suffixes of the children's names (tests.support.operator.CHILDREN), longest first.
CHILD_SUFFIXES = ("-sftp-credentials", "-sftp-host-keys", "-importer-key", "-sftp", "-import")
DISTRICT_SELECTOR = "sync.visitoraware.io/district="


def district_of(request: ApiRequest) -> str | None:
    """The district a request of a reconcile is about (by the child's name or the selector)."""
    if request.name:
        for suffix in CHILD_SUFFIXES:
            if request.name.endswith(suffix):
                return request.name.removesuffix(suffix)
        return request.name
    selector = request.query.get("labelSelector", "")
    for term in selector.split(","):
        if term.startswith(DISTRICT_SELECTOR):
            return term.removeprefix(DISTRICT_SELECTOR)
    return None


def ends_reconcile(request: ApiRequest) -> bool:
    """A reconcile's last read: the importer Jobs of the district (handlers._run_request)."""
    return request.method == "GET" and request.resource == "jobs" and not request.name


async def resync_window(log: RequestLog, fleet: Fleet, quiet: float, cap: float
                        ) -> dict[str, Any]:
    """From now until every district was reconciled by a resync, plus ``quiet`` s."""
    first = log.cursor = log.mark()
    start, cpu = time.perf_counter(), time.process_time()
    covered: set[str] = set()
    everyone = set(fleet.names)
    last, reconciles, writes_seen = start, 0, 0
    while not everyone <= covered and time.perf_counter() - start < cap:
        await asyncio.sleep(0.5)
        for request in log.new():
            writes_seen += request.is_write
            if ends_reconcile(request):
                reconciles += 1
                covered.add(district_of(request) or "")
        if time.perf_counter() - last >= PROGRESS_EVERY:
            last = time.perf_counter()
            say(f"  {last - start:7.1f} s: {len(covered & everyone)}/{len(everyone)} districts "
                f"resynced, {reconciles} reconciles, {writes_seen} writes; CPU "
                f"{100 * (time.process_time() - cpu) / (last - start):.0f}%")
    await asyncio.sleep(quiet)  # the status patch of the last reconcile, if any
    requests = list(log.since(first))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    writes = [r for r in requests if r.is_write]
    reads = [r for r in requests if r.method == "GET"]
    # Reads per resync, from the districts whose requests in the window are whole reconciles
    # (the window cut none): a reconcile reads the 3 Secrets (provisioning.read_material),
    # then applies the other children, and lists the Jobs last.
    by_district: dict[str, list[ApiRequest]] = {}
    for request in reads:
        by_district.setdefault(district_of(request) or "?", []).append(request)
    whole = [rs for name, rs in by_district.items() if name in everyone
             and all(r.resource == "secrets" for r in rs[:3]) and ends_reconcile(rs[-1])]
    whole_rounds = sum(1 for rs in whole for r in rs if ends_reconcile(r))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "covered": len(covered & everyone),
        "rounds": sum(1 for r in reads if ends_reconcile(r)),
        "writes": writes,
        "reads": len(reads),
        "whole_rounds": whole_rounds,
        "whole_reads": Counter(f"{r.verb} {r.resource}" for rs in whole for r in rs),
    }


def progress(fleet: Fleet, start: float, cpu: float) -> None:
    elapsed = time.perf_counter() - start
    say(f"  {elapsed:7.1f} s: created {len(fleet.created)}, CronJobs {len(fleet.cron_jobs)}, "
        f"Deployments made ready {fleet.deployments_made_ready}, Ready {len(fleet.ready)}"
        f"/{len(fleet.names)}; RSS {rss_mb():.0f} MB, CPU "
        f"{100 * (time.process_time() - cpu) / max(elapsed, 1e-9):.0f}%")


async def run_fleet(args: argparse.Namespace, dump: Path) -> dict[str, Any]:
    """Phases (1) to (3) with the operator running; the requests are written to ``dump``."""
    result: dict[str, Any] = {"rss_start": rss_mb(), "phase": "starting the operator"}
    names = [f"district-{index:04d}" for index in range(args.districts)]
    fleet = Fleet(names, ready_after=args.ready_after)
    breakdown = Breakdown()
    async with emulated_cluster(args.stock_emulator) as cluster:
        log = RequestLog(cluster)
        result["rss_emulator"] = rss_mb()
        result["peak_before_operator"] = peak_mb()
        settings = OperatorSettings(namespaces=[NAMESPACE], resync_seconds=args.resync)
        registry = build_registry(settings, Metrics())
        if not args.no_breakdown:
            breakdown.install()
        try:
            async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                        memo=kopf.Memo(), startup_timeout=30,
                                        stop_timeout=30), controllers(cluster, fleet):
                result["rss_operator_started"] = rss_mb()
                result["phase"] = "provisioning"
                await provision(args, cluster, fleet, log, result)
                result["breakdown_provisioning"] = breakdown.snapshot()
                result["peak_ready"] = peak_mb()
                result["rss_ready"] = rss_mb()
                if len(fleet.ready) == len(names) or args.resync_anyway:
                    result["phase"] = "measuring the idle resync"
                    await idle_resync(args, fleet, log, breakdown, result)
                result["size"] = emulator_size(cluster)
                result["phase"] = "stopping the operator"
        except Exception as error:  # the figures so far are still worth printing
            result["failure"] = f"{type(error).__name__}: {error}"
        finally:
            breakdown.uninstall()
        result["peak_operator"] = peak_mb()
        result["hwm_operator"] = hwm_mb()
        log.dump(dump)
    result["fleet"] = fleet
    return result


async def provision(args: argparse.Namespace, cluster: Cluster, fleet: Fleet, log: RequestLog,
                    result: dict[str, Any]) -> None:
    say(f"(1) creating {args.districts} DistrictSyncs"
        + (f" at {args.rate}/s" if args.rate else " at once") + "...")
    first = log.mark()
    start, cpu = time.perf_counter(), time.process_time()
    creating = asyncio.create_task(create_fleet(cluster, fleet, args.rate))
    deadline = start + args.timeout
    last = start
    while len(fleet.ready) < len(fleet.names) and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
        if creating.done():
            creating.result()
            result.setdefault("created_after", max(fleet.created.values()) - start)
        if time.perf_counter() - last >= PROGRESS_EVERY:
            last = time.perf_counter()
            progress(fleet, start, cpu)
    await creating
    result.setdefault("created_after", max(fleet.created.values()) - start)
    progress(fleet, start, cpu)
    result["provisioning_cpu"] = time.process_time() - cpu
    result["start"] = start
    result["prov_reads"], result["prov_writes"] = 0, Counter()
    for request in log.since(first):
        result["prov_reads"] += request.method == "GET"
        if request.is_write:
            result["prov_writes"][request.verb] += 1


async def idle_resync(args: argparse.Namespace, fleet: Fleet, log: RequestLog,
                      breakdown: Breakdown, result: dict[str, Any]) -> None:
    say(f"(3) waiting for no operator write during {args.settle} s...")
    cap = 2 * args.resync + len(fleet.names) + 60
    result["settled_after"] = await settle(log, args.settle, cap)
    say(f"(3) idle resync window: until every district was resynced (<= {cap:.0f} s)...")
    before = breakdown.snapshot()
    result["window"] = await resync_window(log, fleet, args.settle, cap)
    result["breakdown_resync"] = minus(breakdown.snapshot(), before)


# -- (2) the emulator alone, in a child process -------------------------------------------


async def emulator_only(dump: Path, stock: bool) -> dict[str, Any]:
    """An emulator that served the requests in ``dump`` again, one after the other: the same
    objects, stored versions and request log as in the run, without the operator."""
    async with emulated_cluster(stock) as cluster:
        rss_empty = rss_mb()
        started = time.perf_counter()
        async with aiohttp.ClientSession(base_url=cluster.url) as session:
            with dump.open() as source:
                for line in source:
                    request = json.loads(line)
                    headers = {"Content-Type": request["type"]} if request["type"] else {}
                    async with session.request(
                            request["method"], yarl.URL(request["url"], encoded=True),
                            data=request["body"].encode() or None, headers=headers) as response:
                        await response.read()  # errors too: they were errors in the run
        return {"rss_empty": rss_empty, "rss": rss_mb(), "peak": hwm_mb(),
                "replay_seconds": time.perf_counter() - started, **emulator_size(cluster)}


def emulator_baseline(dump: Path, stock: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--emulator-only", str(dump),
               *(["--stock-emulator"] if stock else [])]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the emulator baseline failed:\n{done.stderr}")
    return {**json.loads(done.stdout.splitlines()[-1]), "seconds": time.perf_counter() - started}


# -- (4) key generation alone --------------------------------------------------------------


def keygen_baseline(count: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``count`` x Material.generate(), one after the other."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        secrets.Material.generate()
    return time.perf_counter() - wall, time.process_time() - cpu


# -- the report ---------------------------------------------------------------------------


class WarningCounter(logging.Handler):
    """Counts warnings and errors; shows the first few on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname} {record.name}: {record.getMessage()[:400]}"
        self.counts[key] += 1
        if sum(self.counts.values()) <= SHOWN_WARNINGS:
            say(f"  log: {key}")


def source_version() -> str:
    """The commit the operator code was measured at, ``+changes`` if the tree differs."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "operator", "importer"], cwd=root, check=True,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return commit + (" +changes in operator/ or importer/" if dirty else "")


def row(label: str, value: str) -> None:
    print(f"  {label:58} {value}")


def report(args: argparse.Namespace, result: dict[str, Any], baseline: dict[str, Any] | None,
           keygen: tuple[float, float, int], warnings: WarningCounter, total: float) -> None:
    fleet: Fleet = result["fleet"]
    n = len(fleet.names)
    start = result.get("start", 0.0)
    print(f"\noperator fleet: N={n} districts, {os.cpu_count()} CPUs "
          f"({platform.machine()}), code at {source_version()}")
    print(f"  resync {args.resync:g} s, kopf {version('kopf')}, "
          f"kmock {version('kmock')} ("
          + ("stock emulator" if args.stock_emulator else "emulator with O(1) reaction lookup "
             "and indexed GET/LIST") + f"), Python {platform.python_version()}")
    if "failure" in result:
        print(f"  !! failed while {result['phase']}: {result['failure']}")
    print("(1) provisioning, " + (f"{args.rate}/s" if args.rate else "all created at once")
          + f"; SFTP pods ready {args.ready_after:g} s after their Deployment")
    row("all N DistrictSyncs created (POSTs answered)", f"{result.get('created_after', 0):.1f} s")
    cron_done = len(fleet.cron_jobs) == n
    ready_done = len(fleet.ready) == n
    last_cron = max(fleet.cron_jobs.values(), default=start) - start
    last_ready = max(fleet.ready.values(), default=start) - start
    row("all children exist (last CronJob created)",
        f"{last_cron:.1f} s" if cron_done else f"NOT DONE: {len(fleet.cron_jobs)}/{n}")
    row("all N Ready=True",
        f"{last_ready:.1f} s" if ready_done else f"NOT DONE: {len(fleet.ready)}/{n} "
        f"after {args.timeout:.0f} s")
    if fleet.ready:
        row("throughput (Ready districts / s)", f"{len(fleet.ready) / last_ready:.2f}")
    for label, times in (("latency create -> CronJob", fleet.cron_jobs),
                         ("latency create -> Ready", fleet.ready)):
        latencies = [times[name] - fleet.created[name] for name in times if name in fleet.created]
        if latencies:
            row(f"{label} p50 / p95 / max",
                f"{percentile(latencies, 0.5):.1f} / {percentile(latencies, 0.95):.1f} / "
                f"{max(latencies):.1f} s")
    row("Ready went back to False after True", f"{sum(fleet.ready_lost.values())} times, "
        f"{len(fleet.ready_lost)} districts")
    if "prov_reads" in result:
        writes = result["prov_writes"]
        row("operator API requests until all Ready",
            f"{result['prov_reads']} reads ({result['prov_reads'] / n:.1f}/district), "
            f"{sum(writes.values())} writes ({sum(writes.values()) / n:.1f}/district: "
            + ", ".join(f"{verb} {count}" for verb, count in sorted(writes.items())) + ")")
        wall = last_ready if ready_done else args.timeout
        row("process CPU until all Ready",
            f"{result['provisioning_cpu']:.1f} s ({100 * result['provisioning_cpu'] / wall:.0f}%"
            f" of one CPU; {1000 * result['provisioning_cpu'] / n:.0f} ms/district)")

    print("(2) memory (ru_maxrss = this process's peak: Python + libraries + emulator + operator"
          " + harness)")
    row("RSS after imports", f"{result['rss_start']:.0f} MB")
    row("RSS with the emulator running, before the operator", f"{result['rss_emulator']:.0f} MB")
    row("RSS right after the operator started", f"{result.get('rss_operator_started', 0):.0f} MB")
    if "peak_ready" in result:
        row("peak RSS when all were Ready (RSS then)",
            f"{result['peak_ready']:.0f} MB ({result['rss_ready']:.0f} MB)")
    row("peak RSS at the end of the operator phase", f"{result['peak_operator']:.0f} MB")
    size = result.get("size")
    if size:
        row("  emulator then: objects / stored versions / logged requests",
            f"{size['objects']} / {size['versions']} / {size['requests']}")
    if baseline:
        row("child process: an emulator that served the same requests",
            f"peak {baseline['peak']:.0f} MB (VmHWM; {baseline['rss_empty']:.0f} MB empty; "
            f"replayed in {baseline['replay_seconds']:.0f} s)")
        row("  its objects / stored versions / logged requests",
            f"{baseline['objects']} / {baseline['versions']} / {baseline['requests']}")
        share = result["peak_operator"] - baseline["peak"]
        row("=> operator (kopf, handlers, client, threads) + harness",
            f"{share:.0f} MB ({1024 * share / n:.0f} kB/district; the difference of peaks)")

    print(f"(3) idle resync (no operator write for {args.settle:g} s first)")
    window = result.get("window")
    if window is None:
        row("not measured", "not every district became Ready (see --resync-anyway)")
    else:
        settled = result["settled_after"]
        row("settled after", f"{settled:.1f} s" if settled is not None else "NEVER (writes)")
        row("window / districts resynced in it",
            f"{window['seconds']:.1f} s / {window['covered']}/{n} ({window['rounds']} resyncs)")
        writes = window["writes"]
        kinds = Counter(f"{r.verb} {r.resource}" + (f"/{r.subresource}" if r.subresource else "")
                        for r in writes)
        row("API writes in the window (target 0)", str(len(writes)) + (
            " (" + ", ".join(f"{k} {v}" for k, v in kinds.most_common()) + ")" if writes else ""))
        for request in writes[:3]:
            print(f"      {request}: {json.dumps(request.body, default=str)[:300]}")
        rounds = max(window["rounds"], 1)
        whole = max(window["whole_rounds"], 1)
        row("reads per district resync (from whole reconciles)",
            f"{sum(window['whole_reads'].values()) / whole:.1f} ("
            + ", ".join(f"{k} {v / whole:.0f}" for k, v in window["whole_reads"].most_common())
            + f"; {window['whole_rounds']} reconciles)")
        row("process CPU in the window / per district resync",
            f"{window['cpu']:.1f} s / {1000 * window['cpu'] / rounds:.0f} ms "
            "(all threads: handlers, kopf, emulator, harness)")
        calls, _, handler_cpu = result.get("breakdown_resync", {}).get(
            "reconcile (change/timer handler)", [0, 0.0, 0.0])
        if calls:
            row("handler thread CPU per district resync (reconcile)",
                f"{1000 * handler_cpu / calls:.0f} ms")
        round_cpu = window["cpu"] / rounds * n
        row(f"=> a resync round of N every {args.resync:g} s needs",
            f"{round_cpu:.0f} CPU-s = {100 * round_cpu / args.resync:.0f}% of one CPU"
            + (f" (every 300 s, the default: {100 * round_cpu / 300:.0f}%)"
               if args.resync != 300 else ""))

    print("(4) where the time goes")
    keygen_wall, keygen_cpu, sampled = keygen
    scale = n / sampled
    row(f"key generation alone: {sampled} x Material.generate(), serial"
        + (f", x{scale:.1f}" if sampled != n else ""),
        f"{keygen_wall * scale:.1f} s wall, {keygen_cpu * scale:.1f} s CPU "
        f"({1000 * keygen_wall / sampled:.0f} ms/district)")
    if ready_done:
        row("provisioning time / key generation time",
            f"{last_ready / (keygen_wall * scale):.2f}")
    for title, key, per, label in (
            ("handlers' thread CPU until all Ready", "breakdown_provisioning", n, "district"),
            ("handlers' thread CPU in the resync window", "breakdown_resync",
             max((window or {}).get("rounds", 0), 1), "resync")):
        stats = result.get(key)
        if not stats:
            continue
        print(f"  {title} (rows nest; wall includes GIL waits):")
        print(f"    {'function':48} {'calls':>7} {'CPU s':>8} {'ms/call':>8} {'wall s':>8} "
              f"{'CPU ms/' + label:>16}")
        for name, (calls, wall, cpu) in sorted(stats.items(), key=lambda kv: -kv[1][2]):
            if calls:
                print(f"    {name:48} {calls:7.0f} {cpu:8.1f} {1000 * cpu / calls:8.1f} "
                      f"{wall:8.1f} {1000 * cpu / per:16.1f}")
    total_warnings = sum(warnings.counts.values())
    print(f"  warnings and errors logged: {total_warnings}")
    for message, count in warnings.counts.most_common(5):
        print(f"    {count:6} x {message}")
    print(f"benchmark wall time: {total:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=1000, metavar="N",
                        help="DistrictSync resources to create (default 1000)")
    parser.add_argument("--resync", type=float, default=30, metavar="S",
                        help="the operator's resync_seconds (default 30; production: 300)")
    parser.add_argument("--rate", type=float, default=0, metavar="R",
                        help="create R districts per second (default: all at once)")
    parser.add_argument("--ready-after", type=float, default=0, metavar="S",
                        help="an SFTP pod is ready S s after its Deployment appears (default 0:"
                        " at once)")
    parser.add_argument("--settle", type=float, default=5, metavar="S",
                        help="seconds without operator writes before the resync window")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="give up waiting for Ready after S s (default 120 + 3 s x N)")
    parser.add_argument("--keygen-sample", type=int, metavar="K",
                        help="time K key generations and scale to N (default: all N)")
    parser.add_argument("--no-emulator-baseline", action="store_true",
                        help="skip the child process with the emulator alone")
    parser.add_argument("--no-breakdown", action="store_true",
                        help="do not wrap operator functions to time them")
    parser.add_argument("--resync-anyway", action="store_true",
                        help="measure the idle resync even if not every district got Ready")
    parser.add_argument("--stock-emulator", action="store_true",
                        help="the harness's emulator as the tests use it: O(requests) reaction "
                        "lookup, O(objects) GET and LIST (fast_reaction_matching, "
                        "IndexedEmulator); hopeless beyond ~20 districts")
    parser.add_argument("--emulator-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.stock_emulator:
        fast_reaction_matching()
    if args.emulator_only:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(asyncio.run(emulator_only(args.emulator_only, args.stock_emulator))))
        return
    args.timeout = args.timeout or 120 + 3 * args.districts
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    logging.getLogger().setLevel(logging.WARNING)  # as `visitor-sync operator` without -v
    started = time.perf_counter()
    sampled = min(args.keygen_sample or args.districts, args.districts)
    say(f"(4) key generation alone, first: {sampled} x Material.generate()...")
    keygen_wall, keygen_cpu = keygen_baseline(sampled)
    with tempfile.TemporaryDirectory(prefix="vs-fleet-dump-") as scratch:
        dump = Path(scratch) / "objects.jsonl"
        result = asyncio.run(run_fleet(args, dump))
        baseline = None
        if not args.no_emulator_baseline:
            say("(2) emulator alone with the same objects, in a child process...")
            baseline = emulator_baseline(dump, args.stock_emulator)
    report(args, result, baseline, (keygen_wall, keygen_cpu, sampled), warnings,
           time.perf_counter() - started)


if __name__ == "__main__":
    main()
