"""A workload emulator: per-Deployment request rate, latency and utilisation for Prometheus to scrape.

Development and test infrastructure, not used by the operator itself.

The test clusters have no kubelet, so no real pod ever serves a request. The
emulator stands in for the workloads: each one has a demand (requests per
second), driven by a trace (a NAB-format CSV, ``timestamp,value``, scaled and
sped up so that hours of trace pass in minutes), by a constant, or by any
function of time; and a number of ready replicas read from the API server
(the Deployment's ``spec.replicas``, made ready after a start-up delay, or its
``status.readyReplicas`` on a cluster whose pods really run). From both it
derives what a monitoring system would see, and serves it on ``/metrics`` in
Prometheus' text format, so a scaling decision changes the next scrape.

The model is deliberately simple: every pod serves up to ``capacity_per_pod``
requests per second; each behaves as an M/M/1 queue, so mean latency is
``base + 1 / (mu * (1 - rho))`` and the q-quantile ``base - ln(1 - q) / (mu * (1 - rho))``;
at or past saturation latency is ``max_latency`` and the excess is dropped.

Series (labels ``namespace``, ``deployment``):
``accord_emulator_requests_per_second`` (offered demand),
``accord_emulator_served_requests_per_second``,
``accord_emulator_dropped_requests_per_second``,
``accord_emulator_requests_total`` (counter of offered requests, for ``rate()``),
``accord_emulator_latency_seconds`` (with ``quantile`` 0.5, 0.95, 0.99),
``accord_emulator_latency_mean_seconds``,
``accord_emulator_ready_replicas``, ``accord_emulator_desired_replicas``,
``accord_emulator_capacity_requests_per_second``,
``accord_emulator_utilisation`` (offered demand over capacity; above 1 when overloaded,
``+Inf`` with demand and no replica), ``accord_emulator_workload_present``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import logging
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from accord_dev.cluster.service import Service

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "LATENCY_QUANTILES",
    "DemandFunction",
    "Trace",
    "WorkloadEmulator",
    "WorkloadSample",
    "render_metrics",
]

logger = logging.getLogger(__name__)

DemandFunction = Callable[[float], float]
"""Demand in requests per second, given the seconds since the emulator started."""

ReplicaSource = Literal["spec", "status"]

LATENCY_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    """A demand trace: values at offsets (seconds of trace time from its first sample).

    Calling it with wall-clock seconds since the emulator started returns the
    demand at ``elapsed * speedup`` seconds into the trace (the last sample at
    or before that point), wrapping around at the end when ``loop`` is set and
    holding the last value otherwise.
    """

    offsets: tuple[float, ...]
    values: tuple[float, ...]
    interval: float
    speedup: float = 1.0
    loop: bool = True
    start_offset: float = 0.0

    def __post_init__(self) -> None:
        if not self.offsets or len(self.offsets) != len(self.values):
            raise ValueError("a trace needs as many values as offsets, and at least one")
        if self.speedup <= 0:
            raise ValueError("speedup must be positive")

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        scale: float = 1.0,
        peak: float | None = None,
        speedup: float = 1.0,
        loop: bool = True,
        start_offset: float = 0.0,
    ) -> Trace:
        """Read a NAB-format CSV (header, then ``timestamp,value``).

        ``peak`` rescales the trace so that its largest value becomes ``peak``
        requests per second (it replaces ``scale``); ``start_offset`` skips
        that many seconds of trace time.
        """
        times: list[dt.datetime] = []
        raw: list[float] = []
        with Path(path).open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty trace")
            for row in reader:
                if len(row) < 2 or not row[0].strip():
                    continue
                times.append(dt.datetime.fromisoformat(row[0].strip()))
                raw.append(float(row[1]))
        if not raw:
            raise ValueError(f"{path}: no samples")
        if peak is not None:
            top = max(raw)
            scale = peak / top if top > 0 else 0.0
        offsets = tuple((t - times[0]).total_seconds() for t in times)
        steps = [b - a for a, b in itertools.pairwise(offsets) if b > a]
        interval = statistics.median(steps) if steps else 1.0
        return cls(
            offsets=offsets,
            values=tuple(v * scale for v in raw),
            interval=interval,
            speedup=speedup,
            loop=loop,
            start_offset=start_offset,
        )

    @property
    def duration(self) -> float:
        """Seconds of trace time covered, including the last sample's interval."""
        return self.offsets[-1] + self.interval

    def value_at(self, trace_seconds: float) -> float:
        """The demand at a point of trace time."""
        tau = trace_seconds
        if self.loop:
            tau %= self.duration
        elif tau >= self.offsets[-1]:
            return self.values[-1]
        if tau <= self.offsets[0]:
            return self.values[0]
        # Binary search: traces have tens of thousands of samples and this
        # runs on every scrape.
        lo, hi = 0, len(self.offsets) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.offsets[mid] <= tau:
                lo = mid
            else:
                hi = mid - 1
        return self.values[lo]

    def __call__(self, elapsed: float) -> float:
        return self.value_at(self.start_offset + elapsed * self.speedup)


def _constant(value: float) -> DemandFunction:
    def demand(elapsed: float) -> float:
        return value

    return demand


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class WorkloadSample:
    """What the emulator reports for one workload at one instant."""

    namespace: str
    deployment: str
    demand: float
    served: float
    dropped: float
    ready_replicas: int
    desired_replicas: int
    capacity: float
    utilisation: float
    latency_mean: float
    latency_quantiles: tuple[tuple[float, float], ...]
    requests_total: float
    present: bool


@dataclass
class _Workload:
    namespace: str
    deployment: str
    demand: DemandFunction
    capacity_per_pod: float
    kind: str = "Deployment"  # or StatefulSet: what is read from the API server
    present: bool = False
    desired_replicas: int = 0
    ready_replicas: int = 0
    replicas_override: int | None = None
    scale_up_noticed_at: float | None = None
    requests_total: float = 0.0
    last_integrated_at: float | None = None
    last_demand: float = 0.0


def _latency(
    *, demand: float, replicas: int, capacity_per_pod: float, base: float, max_latency: float, quantile: float | None
) -> float:
    if demand <= 0:
        return base
    if replicas <= 0 or capacity_per_pod <= 0:
        return max_latency
    rho = demand / (replicas * capacity_per_pod)
    if rho >= 1.0:
        return max_latency
    rate = capacity_per_pod * (1.0 - rho)
    queueing = 1.0 / rate if quantile is None else -math.log(1.0 - quantile) / rate
    return min(base + queueing, max_latency)


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(samples: Iterable[WorkloadSample]) -> str:
    """Prometheus text exposition (format 0.0.4) of the samples."""
    samples = list(samples)
    lines: list[str] = []

    def family(
        name: str, kind: str, help_text: str, value: Callable[[WorkloadSample], Iterable[tuple[str, float]]]
    ) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for s in samples:
            base = f'namespace="{_escape(s.namespace)}",deployment="{_escape(s.deployment)}"'
            for extra_labels, v in value(s):
                labels = base + ("," + extra_labels if extra_labels else "")
                lines.append(f"{name}{{{labels}}} {_format_value(v)}")

    family(
        "accord_emulator_requests_per_second",
        "gauge",
        "Offered demand, requests per second.",
        lambda s: [("", s.demand)],
    )
    family(
        "accord_emulator_served_requests_per_second",
        "gauge",
        "Requests per second served within capacity.",
        lambda s: [("", s.served)],
    )
    family(
        "accord_emulator_dropped_requests_per_second",
        "gauge",
        "Requests per second beyond capacity.",
        lambda s: [("", s.dropped)],
    )
    family(
        "accord_emulator_requests_total",
        "counter",
        "Offered requests since the emulator started.",
        lambda s: [("", s.requests_total)],
    )
    family(
        "accord_emulator_latency_seconds",
        "gauge",
        "Response-time quantiles of the M/M/1-per-pod model.",
        lambda s: [(f'quantile="{q}"', v) for q, v in s.latency_quantiles],
    )
    family(
        "accord_emulator_latency_mean_seconds",
        "gauge",
        "Mean response time.",
        lambda s: [("", s.latency_mean)],
    )
    family(
        "accord_emulator_ready_replicas",
        "gauge",
        "Replicas serving requests.",
        lambda s: [("", float(s.ready_replicas))],
    )
    family(
        "accord_emulator_desired_replicas",
        "gauge",
        "Replicas the Deployment asks for.",
        lambda s: [("", float(s.desired_replicas))],
    )
    family(
        "accord_emulator_capacity_requests_per_second",
        "gauge",
        "Ready replicas times capacity per pod.",
        lambda s: [("", s.capacity)],
    )
    family(
        "accord_emulator_utilisation",
        "gauge",
        "Offered demand over capacity (above 1 means overloaded).",
        lambda s: [("", s.utilisation)],
    )
    family(
        "accord_emulator_workload_present",
        "gauge",
        "1 if the Deployment exists in the API server (or replicas are set by hand).",
        lambda s: [("", 1.0 if s.present else 0.0)],
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the emulator


class WorkloadEmulator(Service):
    """Serves emulated workload metrics on ``http://127.0.0.1:<port>/metrics``.

    ::

        with WorkloadEmulator(api_client=cp.api_client()) as emulator:
            emulator.set_demand("shop", "web", 850.0)
            prometheus = PrometheusServer(targets=[emulator.target])

    Without ``api_client`` nothing is polled and replicas come from
    :meth:`set_replicas` only (handy in unit tests, with :meth:`samples`).
    """

    def __init__(
        self,
        *,
        api_client: ApiClient | None = None,
        capacity_per_pod: float = 100.0,
        base_latency: float = 0.02,
        max_latency: float = 10.0,
        replica_source: ReplicaSource = "spec",
        startup_delay: float = 0.0,
        poll_interval: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity_per_pod <= 0:
            raise ValueError("capacity_per_pod must be positive")
        self._api_client = api_client
        self._capacity_per_pod = capacity_per_pod
        self._base_latency = base_latency
        self._max_latency = max_latency
        self._replica_source: ReplicaSource = replica_source
        self._startup_delay = startup_delay
        self._poll_interval = poll_interval
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._started_at = clock()

        self._workloads: dict[tuple[str, str], _Workload] = {}
        self._lock = threading.Lock()
        self._api_lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- workloads

    def add_workload(
        self,
        namespace: str,
        deployment: str,
        *,
        demand: float | DemandFunction = 0.0,
        capacity_per_pod: float | None = None,
        kind: str = "Deployment",
    ) -> None:
        """Emulate a Deployment or StatefulSet (again: replaces its demand and capacity, keeps its counters).

        The series carry its name in the ``deployment`` label whatever its kind."""
        if kind not in {"Deployment", "StatefulSet"}:
            raise ValueError(f"cannot emulate a {kind}: Deployment or StatefulSet")
        function = _constant(float(demand)) if isinstance(demand, int | float) else demand
        with self._lock:
            existing = self._workloads.get((namespace, deployment))
            if existing is not None:
                self._integrate(existing, self._clock())
                existing.demand = function
                existing.capacity_per_pod = capacity_per_pod or existing.capacity_per_pod
                existing.kind = kind
                return
            self._workloads[(namespace, deployment)] = _Workload(
                namespace=namespace,
                deployment=deployment,
                demand=function,
                capacity_per_pod=capacity_per_pod or self._capacity_per_pod,
                kind=kind,
            )

    def set_demand(self, namespace: str, deployment: str, demand: float | DemandFunction) -> None:
        """Set a workload's demand (requests per second, or a function of elapsed seconds)."""
        self.add_workload(namespace, deployment, demand=demand)

    def set_replicas(self, namespace: str, deployment: str, replicas: int | None) -> None:
        """Fix a workload's ready replicas by hand (``None`` goes back to the API server)."""
        with self._lock:
            workload = self._workloads.get((namespace, deployment))
            if workload is None:
                raise KeyError(f"{namespace}/{deployment} is not emulated")
            self._integrate(workload, self._clock())
            workload.replicas_override = replicas

    def remove_workload(self, namespace: str, deployment: str) -> None:
        with self._lock:
            self._workloads.pop((namespace, deployment), None)

    def workloads(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._workloads)

    # ----------------------------------------------------------------- the model

    def _integrate(self, workload: _Workload, now: float) -> None:
        # Piecewise-constant integration between evaluations: exact for
        # constant demand and close enough for traces sampled each scrape.
        if workload.last_integrated_at is not None and now > workload.last_integrated_at:
            workload.requests_total += workload.last_demand * (now - workload.last_integrated_at)
        workload.last_demand = max(0.0, workload.demand(now - self._started_at))
        workload.last_integrated_at = now

    def _sample(self, workload: _Workload, now: float) -> WorkloadSample:
        self._integrate(workload, now)
        demand = workload.last_demand
        if workload.replicas_override is not None:
            ready = desired = workload.replicas_override
            present = True
        else:
            ready, desired, present = workload.ready_replicas, workload.desired_replicas, workload.present
        mu = workload.capacity_per_pod
        capacity = ready * mu
        served = min(demand, capacity)
        # +Inf with demand and no replica: honest, and PromQL compares it fine.
        idle_utilisation = math.inf if demand > 0 else 0.0
        utilisation = demand / capacity if capacity > 0 else idle_utilisation

        def latency(quantile: float | None) -> float:
            return _latency(
                demand=demand,
                replicas=ready,
                capacity_per_pod=mu,
                base=self._base_latency,
                max_latency=self._max_latency,
                quantile=quantile,
            )

        return WorkloadSample(
            namespace=workload.namespace,
            deployment=workload.deployment,
            demand=demand,
            served=served,
            dropped=demand - served,
            ready_replicas=ready,
            desired_replicas=desired,
            capacity=capacity,
            utilisation=utilisation,
            latency_mean=latency(None),
            latency_quantiles=tuple((q, latency(q)) for q in LATENCY_QUANTILES),
            requests_total=workload.requests_total,
            present=present,
        )

    def samples(self) -> list[WorkloadSample]:
        """The current state of every workload, as the next scrape will see it."""
        now = self._clock()
        with self._lock:
            self._advance_readiness(now)
            return [self._sample(w, now) for _, w in sorted(self._workloads.items())]

    def sample(self, namespace: str, deployment: str) -> WorkloadSample:
        for s in self.samples():
            if (s.namespace, s.deployment) == (namespace, deployment):
                return s
        raise KeyError(f"{namespace}/{deployment} is not emulated")

    def render(self) -> str:
        return render_metrics(self.samples())

    def _advance_readiness(self, now: float) -> None:
        for workload in self._workloads.values():
            if self._replica_source != "spec":
                continue
            if workload.desired_replicas <= workload.ready_replicas:
                # Scale-downs take effect at once: a terminating pod stops
                # receiving traffic before it is gone.
                workload.ready_replicas = workload.desired_replicas
                workload.scale_up_noticed_at = None
                continue
            if workload.scale_up_noticed_at is None:
                workload.scale_up_noticed_at = now
            if now - workload.scale_up_noticed_at >= self._startup_delay:
                workload.ready_replicas = workload.desired_replicas
                workload.scale_up_noticed_at = None

    # ----------------------------------------------------------------- the API server

    def sync_now(self) -> None:
        """Read every emulated workload from the API server now, instead of at the next poll."""
        if self._api_client is None:
            return
        from kubernetes.client import AppsV1Api
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            targets = [(key, w.kind) for key, w in sorted(self._workloads.items())]
        readings: dict[tuple[str, str], tuple[bool, int, int] | None] = {}
        with self._api_lock:
            apps = AppsV1Api(self._api_client)
            for (namespace, name), kind in targets:
                read = apps.read_namespaced_stateful_set if kind == "StatefulSet" else apps.read_namespaced_deployment
                try:
                    deployment = read(name, namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        readings[(namespace, name)] = (False, 0, 0)
                    else:
                        logger.warning("reading %s/%s failed: %s", namespace, name, exc.reason)
                        readings[(namespace, name)] = None
                    continue
                except Exception as exc:  # network errors: keep the last reading
                    logger.warning("reading %s/%s failed: %s", namespace, name, exc)
                    readings[(namespace, name)] = None
                    continue
                spec = int(deployment.spec.replicas if deployment.spec.replicas is not None else 1)
                ready = int((deployment.status and deployment.status.ready_replicas) or 0)
                readings[(namespace, name)] = (True, spec, ready)
        now = self._clock()
        with self._lock:
            for key, reading in readings.items():
                workload = self._workloads.get(key)
                if workload is None or reading is None:
                    continue
                # Integrate up to now first so the counter charges the old
                # replica count for the time before the change.
                self._integrate(workload, now)
                present, spec, ready = reading
                workload.present = present
                workload.desired_replicas = spec
                if self._replica_source == "status":
                    workload.ready_replicas = ready
            self._advance_readiness(now)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_now()
            except Exception:
                logger.exception("emulator poll failed")
            self._stop.wait(self._poll_interval)

    # ----------------------------------------------------------------- HTTP

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator has not been started")
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        """``host:port``, as a Prometheus static target."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "accord-emulator/1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s " + format, self.address_string(), *args)

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, emulator.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/healthz":
                    self._reply(200, b"ok\n", "text/plain")
                elif path == "/workloads":
                    body = json.dumps([asdict(s) for s in emulator.samples()], default=str, indent=1)
                    self._reply(200, body.encode(), "application/json")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:
                # A demo can change the load from another terminal:
                # curl -d '{"namespace":"shop","deployment":"web","value":900}' .../demand
                if self.path.split("?", 1)[0] != "/demand":
                    self._reply(404, b"not found\n", "text/plain")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    payload = json.loads(self.rfile.read(length))
                    emulator.set_demand(str(payload["namespace"]), str(payload["deployment"]), float(payload["value"]))
                except (KeyError, TypeError, ValueError) as exc:
                    self._reply(400, f"bad request: {exc}\n".encode(), "text/plain")
                    return
                self._reply(204, b"", "text/plain")

        return Handler

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stop.clear()
        server = ThreadingHTTPServer((self._host, self._requested_port), self._handler())
        server.daemon_threads = True
        self._server = server
        serve = threading.Thread(target=server.serve_forever, name="accord-emulator-http", daemon=True)
        serve.start()
        self._threads = [serve]
        if self._api_client is not None:
            self.sync_now()
            poll = threading.Thread(target=self._poll_loop, name="accord-emulator-poll", daemon=True)
            poll.start()
            self._threads.append(poll)

    def stop(self) -> None:
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []


# --------------------------------------------------------------------------- command line


def _parse_workload(spec: str, *, speedup: float, peak: float | None) -> tuple[str, str, float | DemandFunction]:
    target, _, value = spec.partition("=")
    namespace, _, name = target.partition("/")
    if not namespace or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/DEPLOYMENT=RATE or =@TRACE.csv, got {spec!r}")
    if value.startswith("@"):
        return namespace, name, Trace.from_csv(value[1:], peak=peak, speedup=speedup)
    return namespace, name, float(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve emulated workloads until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m accord_dev.cluster.emulator",
        description="Serve emulated per-Deployment metrics for Prometheus.",
    )
    parser.add_argument("--kubeconfig", type=Path, help="read replicas from this cluster")
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--capacity-per-pod", type=float, default=100.0)
    parser.add_argument("--speedup", type=float, default=60.0, help="trace seconds per wall-clock second")
    parser.add_argument("--peak", type=float, default=None, help="rescale traces to this peak (req/s)")
    parser.add_argument(
        "--workload",
        action="append",
        default=[],
        metavar="NS/NAME=RATE|@TRACE.csv",
        help="an emulated Deployment (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    api_client = None
    if args.kubeconfig is not None:
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(args.kubeconfig))  # type: ignore[no-untyped-call]
    emulator = WorkloadEmulator(api_client=api_client, capacity_per_pod=args.capacity_per_pod, port=args.port)
    for spec in args.workload:
        namespace, name, demand = _parse_workload(spec, speedup=args.speedup, peak=args.peak)
        emulator.add_workload(namespace, name, demand=demand)
    with emulator:
        print(f"serving {emulator.url}/metrics; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
