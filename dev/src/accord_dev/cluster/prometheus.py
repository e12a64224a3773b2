"""A throw-away Prometheus server on loopback.

Development and test infrastructure, not used by the operator itself.

Runs Debian's ``/usr/bin/prometheus`` with a configuration written from what
the caller gives (scrape targets and interval, or a whole configuration), a
temporary TSDB and a free port on 127.0.0.1. Targets can be changed while it
runs (:meth:`PrometheusServer.set_targets` reloads the configuration).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from accord_dev.cluster import tools
from accord_dev.cluster.local import free_port
from accord_dev.cluster.service import Service

__all__ = ["PrometheusError", "PrometheusServer"]


class PrometheusError(RuntimeError):
    """Prometheus did not start, or refused its configuration."""


class PrometheusServer(Service):
    """Prometheus scraping ``targets`` (``host:port`` strings) every ``scrape_interval``.

    Pass ``config`` instead to run a complete configuration of your own; its
    ``global`` section gets the scrape interval unless it sets one::

        with PrometheusServer(targets=[emulator.target], scrape_interval="1s") as prom:
            PrometheusConnect(url=prom.url).custom_query("up")

    ``directory`` (default: a temporary one, removed on stop) holds the configuration, the log
    and the TSDB in ``tsdb/``; blocks already there, such as history backfilled with
    ``promtool tsdb create-blocks-from``, are served as soon as the server is ready.
    """

    def __init__(
        self,
        *,
        targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        job_name: str = "accord-e2e",
        metrics_path: str = "/metrics",
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        config: Mapping[str, Any] | None = None,
        directory: str | Path | None = None,
        keep_directory: bool = False,
        start_timeout: float = 60.0,
        port: int = 0,
    ) -> None:
        self._targets = list(targets)
        # A fixed port lets a test stop Prometheus and bring it back where its clients look.
        self._requested_port = port
        self._scrape_interval = scrape_interval
        self._job_name = job_name
        self._metrics_path = metrics_path
        self._extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self._config = dict(config) if config is not None else None
        self._requested_dir = Path(directory) if directory is not None else None
        self._keep_directory = keep_directory
        self._start_timeout = start_timeout
        self._dir: Path | None = None
        self._created_dir = False
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ----------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for PrometheusConnect or a browser."""
        if not self._port:
            raise RuntimeError("Prometheus has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise RuntimeError("Prometheus has not been started")
        return self._dir

    @property
    def config_path(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    # ----------------------------------------------------------------- configuration

    def render_config(self) -> dict[str, Any]:
        """The configuration Prometheus runs with."""
        if self._config is not None:
            document = dict(self._config)
            global_section = dict(document.get("global") or {})
            global_section.setdefault("scrape_interval", self._scrape_interval)
            global_section.setdefault("evaluation_interval", self._scrape_interval)
            document["global"] = global_section
            return document
        scrape_configs: list[dict[str, Any]] = []
        if self._targets:
            scrape_configs.append(
                {
                    "job_name": self._job_name,
                    "metrics_path": self._metrics_path,
                    "static_configs": [{"targets": list(self._targets)}],
                }
            )
        scrape_configs += self._extra_scrape_configs
        return {
            "global": {
                "scrape_interval": self._scrape_interval,
                # The scrape timeout may not exceed the interval, and the
                # default (10s) does for the short intervals tests use.
                "scrape_timeout": self._scrape_interval,
                "evaluation_interval": self._scrape_interval,
            },
            "scrape_configs": scrape_configs,
        }

    def _write_config(self) -> None:
        text = yaml.safe_dump(self.render_config(), sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the scrape targets; a running server reloads at once."""
        self._targets = list(targets)
        if self._process is not None:
            self._write_config()
            self.reload()

    def reload(self) -> None:
        """Ask the running server to re-read its configuration file."""
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise PrometheusError(
                f"Prometheus refused the configuration ({exc.code}): {exc.read().decode(errors='replace')}"
            ) from exc

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("Prometheus is already running")
        if self._requested_dir is not None:
            self._dir = self._requested_dir
            self._dir.mkdir(parents=True, exist_ok=True)
            self._created_dir = False
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="accord-prometheus-"))
            self._created_dir = True
        self._port = self._requested_port or free_port()
        self._write_config()
        argv = [
            str(tools.prometheus()),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--web.enable-lifecycle",
            # Lets tests delete series between cases when they need a clean slate.
            "--web.enable-admin-api",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self._keep_directory = True
            self._terminate()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise PrometheusError(self._failure("Prometheus exited during start-up"))
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise PrometheusError(self._failure(f"Prometheus not ready within {self._start_timeout:.0f}s"))

    def _failure(self, message: str) -> str:
        try:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            tail = "(no log)"
        return f"{message}; last lines of {self.log_path}:\n{tail}"

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the server and remove its directory unless asked to keep it."""
        atexit.unregister(self.stop)
        self._terminate()
        if self._dir is not None and self._created_dir and not self._keep_directory:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ----------------------------------------------------------------- queries

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (stdlib only, for quick checks and waits)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_targets_up(self, *, timeout: float = 30.0) -> None:
        """Wait until every configured target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/api/v1/targets?state=active", timeout=10) as response:
                active = json.loads(response.read())["data"]["activeTargets"]
            states = [f"{t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}".strip() for t in active]
            if active and all(t["health"] == "up" for t in active):
                return
            time.sleep(0.5)
        raise PrometheusError(f"targets not up within {timeout:.0f}s: {states}")
