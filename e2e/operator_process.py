"""The operator as a process of its own, the way `accord run` starts it, for the end-to-end suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`accord run` against a kubeconfig, with /metrics on a free port and, optionally, the webhook."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        prometheus_url: str | None,
        log_path: Path,
        webhook: bool = True,
        namespaces: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        webhook_port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.log_path = log_path
        self.webhook = webhook
        self.namespaces = namespaces
        self.extra_env = extra_env or {}
        self.extra_args = extra_args
        self.metrics_port = free_port()
        self.webhook_port = webhook_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "accord.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "info",
        ]
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        if self.webhook:
            argv += ["--webhook", "--webhook-port", str(self.webhook_port)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        argv += list(self.extra_args)  # later flags win: these may override the ones above
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts}: {' '.join(argv)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.metrics_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the operator did not answer /healthz within {timeout}s:\n{self.tail()}")
        if self.webhook:
            self._wait_for_webhook(deadline)

    def _wait_for_webhook(self, deadline: float) -> None:
        """kopf registers the webhook configuration once its server listens; wait for both."""
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.webhook_port)) == 0:
                    time.sleep(1.0)  # let kopf patch the ValidatingWebhookConfiguration
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the webhook server did not listen on {self.webhook_port}:\n{self.tail()}")

    def readyz(self) -> tuple[int, str]:
        """/readyz's status and text (0 and the error while nothing answers)."""
        try:
            with urllib.request.urlopen(f"{self.metrics_url}/readyz", timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL: no clean-up handlers run, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
