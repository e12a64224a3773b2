"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Development and test infrastructure, not used by the operator itself.

The same shape as controller-runtime's envtest, plus the controller manager so
that Deployments get ReplicaSets and Pods, and the scheduler so that Pods are
bound to Nodes. There is no kubelet: Nodes are objects that tests create, or
that :mod:`accord_dev.cluster.kubelets` registers and keeps alive (heartbeats,
pods going Running and Ready) the way kwok does.

Everything lives in a temporary directory: a CA, serving and client
certificates, the service-account key, etcd's data, the components' logs and
kubeconfigs for an admin (``system:masters``), for a user ``nobody`` that holds
no permission at all, and for any user a test mints with :meth:`user_kubeconfig`.
The API server runs with TLS and RBAC, as a real cluster does.

Run ``python -m accord_dev.cluster.local`` to start one and keep it up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord_dev.cluster import tools
from accord_dev.cluster.service import Service

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "DEFAULT_ADMISSION_PLUGINS",
    "DEFAULT_CONTROLLERS",
    "ControlPlaneError",
    "LocalControlPlane",
    "free_port",
    "main",
]

# kube-apiserver 1.20's default admission chain, written out so a test can see
# what admission the server applies. The flag only ever adds to the defaults:
# to switch one off, pass --disable-admission-plugins in extra_apiserver_args.
DEFAULT_ADMISSION_PLUGINS: tuple[str, ...] = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)

# Everything but the loops that talk to a cloud provider; they would only log
# errors every few seconds without one.
DEFAULT_CONTROLLERS: tuple[str, ...] = ("*", "-cloud-node-lifecycle", "-route", "-service")

CLUSTER_NAME = "accord-local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_SERVICE_IP = ipaddress.ip_address("10.0.0.1")
_LOG_TAIL_LINES = 40

ExtraArgs = Sequence[str] | Callable[["LocalControlPlane"], Sequence[str]]


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the failing log's tail."""

    def __init__(self, message: str, *, component: str | None, log_dir: Path | None) -> None:
        super().__init__(message)
        self.component = component
        self.log_dir = log_dir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(count: int) -> list[int]:
    # Held open together so that one call never hands out the same port twice.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class _KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _CertificateAuthority:
    """A throw-away CA. EC keys: generating them is instant, unlike RSA."""

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._name = name
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pair(self) -> _KeyPair:
        return _KeyPair(self._cert.public_bytes(serialization.Encoding.PEM), _key_pem(self._key))

    def issue(
        self,
        *,
        common_name: str,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> _KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return _KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- processes


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    argv: tuple[str, ...] = ()


def _die_with_parent() -> None:
    # Linux only: if the test process is killed outright (a CI timeout, a
    # SIGKILL), the kernel takes the servers down with it instead of leaving
    # them behind holding ports and memory.
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


_NOTABLE = re.compile(r"^(Error|error|panic|fatal|[FE]\d{4} )")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    # A bad flag makes Kubernetes components print the error and then a long
    # usage text, which would push the one line that matters out of the tail.
    earlier = [line for line in all_lines[:-lines] if _NOTABLE.match(line)][-10:]
    if earlier:
        return "\n".join(["(errors earlier in the log:)", *earlier, "(last lines:)", *tail])
    return "\n".join(tail)


def _kill_group(process: subprocess.Popen[bytes], *, grace: float) -> None:
    if process.poll() is not None:
        return
    # start_new_session made the child the leader of its own group, so the
    # group id is its pid and signalling the group never reaches processes
    # that this object did not start.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# --------------------------------------------------------------------------- the control plane


class LocalControlPlane(Service):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with LocalControlPlane() as cp:
            api = cp.api_client()
            ...

    ``extra_apiserver_args`` (a list, or a callable that receives the control
    plane once its certificates exist, e.g. to point an admission
    configuration at files in :attr:`directory`) are appended to the API
    server's command line; ``extra_controller_manager_args`` and
    ``extra_scheduler_args`` likewise.

    On Linux the components are tied to the thread that calls :meth:`start`
    (``PR_SET_PDEATHSIG``), so that a test process killed outright takes them
    down with it: start it from the main thread, or from one that lives as
    long as the control plane.
    """

    def __init__(
        self,
        *,
        directory: str | Path | None = None,
        keep_directory: bool = False,
        admission_plugins: Sequence[str] = DEFAULT_ADMISSION_PLUGINS,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_apiserver_args: ExtraArgs = (),
        extra_controller_manager_args: ExtraArgs = (),
        extra_scheduler_args: ExtraArgs = (),
        start_timeout: float = 120.0,
        stop_grace: float = 10.0,
        with_controller_manager: bool = True,
        with_scheduler: bool = True,
    ) -> None:
        self._requested_dir = Path(directory) if directory is not None else None
        self._keep_directory = keep_directory
        self._admission_plugins = tuple(admission_plugins)
        self._controllers = tuple(controllers)
        self._extra_apiserver_args = extra_apiserver_args
        self._extra_cm_args = extra_controller_manager_args
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._with_cm = with_controller_manager
        self._extra_scheduler_args = extra_scheduler_args
        self._with_scheduler = with_scheduler

        self._dir: Path | None = None
        self._created_dir = False
        self._components: list[_Component] = []
        self._ca: _CertificateAuthority | None = None
        self._apiserver_port = 0
        self._etcd_port = 0
        self._user_kubeconfigs: dict[tuple[str, tuple[str, ...]], Path] = {}
        self._lock = threading.Lock()
        self._started = False

    # ----------------------------------------------------------------- properties

    @property
    def directory(self) -> Path:
        """The working directory: certificates, kubeconfigs, etcd data, logs."""
        if self._dir is None:
            raise RuntimeError("the control plane has not been started")
        return self._dir

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.directory / "pki"

    @property
    def url(self) -> str:
        """The API server's address, ``https://127.0.0.1:<port>``."""
        if not self._apiserver_port:
            raise RuntimeError("the control plane has not been started")
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def ca_cert_path(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (for a webhook's ``caBundle``, base64 it)."""
        return self.ca_cert_path.read_bytes()

    @property
    def kubeconfig(self) -> Path:
        """Kubeconfig of the cluster admin (client certificate in ``system:masters``)."""
        return self.directory / "kubeconfigs" / "admin.kubeconfig"

    @property
    def nobody_kubeconfig(self) -> Path:
        """Kubeconfig of user ``nobody``: authenticated, in no group, bound to no role."""
        return self.directory / "kubeconfigs" / "nobody.kubeconfig"

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running components, by name."""
        return {c.name: c.process.pid for c in self._components if c.process.poll() is None}

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the components and wait until the cluster serves requests."""
        with self._lock:
            if self._started:
                raise RuntimeError("the control plane is already running")
            self._started = True
        self._prepare_directory()
        atexit.register(self.stop)
        try:
            self._write_pki()
            etcd_port, etcd_peer_port, api_port, cm_port, scheduler_port = _free_ports(5)
            self._apiserver_port = api_port
            self._write_kubeconfigs()
            self._start_etcd(etcd_port, etcd_peer_port)
            self._wait_etcd(etcd_port)
            self._start_apiserver(etcd_port)
            self._wait_apiserver_ready()
            if self._with_cm:
                self._start_controller_manager(cm_port)
                self._wait_default_service_account()
            if self._with_scheduler:
                self._start_scheduler(scheduler_port)
                self._wait_scheduler_healthy(scheduler_port)
        except BaseException as exc:
            self._stop_processes()
            self._keep_directory = True
            # etcd preallocates 64 MB of WAL; the logs and certificates are
            # what someone debugging a failed start needs.
            shutil.rmtree(self.directory / "etcd", ignore_errors=True)
            atexit.unregister(self.stop)
            with self._lock:
                self._started = False
            if isinstance(exc, ControlPlaneError) or not isinstance(exc, Exception):
                raise
            raise ControlPlaneError(
                f"local control plane failed to start: {exc!r}; logs kept in {self.log_dir}",
                component=None,
                log_dir=self.log_dir,
            ) from exc

    def stop(self) -> None:
        """Stop exactly the processes this object started; remove the directory unless kept."""
        atexit.unregister(self.stop)
        self._stop_processes()
        if self._dir is not None and self._created_dir and not self._keep_directory:
            shutil.rmtree(self._dir, ignore_errors=True)
        with self._lock:
            self._started = False

    def restart(self, name: str, *, down_seconds: float = 0.0) -> None:
        """A fault for tests: stop one component (SIGTERM, SIGKILL after the grace), leave it down for
        `down_seconds`, start it again with the same command line and data, and wait until etcd (if
        it was etcd) and the API server serve again. The API server keeps its address."""
        index = next((i for i, c in enumerate(self._components) if c.name == name), None)
        if index is None:
            running = ", ".join(c.name for c in self._components) or "none"
            raise ValueError(f"no component {name!r} is running (running: {running})")
        old = self._components[index]
        try:
            _kill_group(old.process, grace=self._stop_grace)
        finally:
            old.log_file.close()
        time.sleep(down_seconds)
        new = self._spawn(name, old.argv)
        self._components.pop()
        self._components[index] = new
        if name == "etcd":
            self._wait_etcd(self._etcd_port, new)
        self._wait_apiserver_ready()

    def _stop_processes(self) -> None:
        # Reverse order: the controller manager and the API server first, so
        # they do not log a burst of errors about a vanished etcd.
        while self._components:
            component = self._components.pop()
            try:
                _kill_group(component.process, grace=self._stop_grace)
            finally:
                component.log_file.close()

    def _prepare_directory(self) -> None:
        if self._requested_dir is not None:
            self._dir = self._requested_dir
            self._dir.mkdir(parents=True, exist_ok=True)
            self._created_dir = False
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="accord-local-"))
            self._created_dir = True
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- PKI and kubeconfigs

    def _write_pki(self) -> None:
        ca = _CertificateAuthority(f"{CLUSTER_NAME}-ca")
        self._ca = ca
        pki = self.pki_dir
        _write(pki / "ca.crt", ca.pair.cert_pem)
        _write(pki / "ca.key", ca.pair.key_pem, private=True)

        serving = ca.issue(
            common_name="kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", "::1", str(_SERVICE_IP)],
            server=True,
        )
        _write(pki / "apiserver.crt", serving.cert_pem)
        _write(pki / "apiserver.key", serving.key_pem, private=True)

        # A separate CA for the aggregation layer, as kubeadm sets up: without
        # it the controller manager's delegated authentication logs an error
        # every few seconds about a missing requestheader bundle.
        front_proxy_ca = _CertificateAuthority(f"{CLUSTER_NAME}-front-proxy-ca")
        _write(pki / "front-proxy-ca.crt", front_proxy_ca.pair.cert_pem)
        proxy_client = front_proxy_ca.issue(common_name="front-proxy-client", client=True)
        _write(pki / "front-proxy-client.crt", proxy_client.cert_pem)
        _write(pki / "front-proxy-client.key", proxy_client.key_pem, private=True)

        # Service-account tokens are signed with RSA: the token controller and
        # most clients expect RS256.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(pki / "sa.key", _key_pem(sa_key), private=True)
        _write(
            pki / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _client_pair(self, user: str, groups: Sequence[str]) -> _KeyPair:
        if self._ca is None:
            raise RuntimeError("the control plane has not been started")
        return self._ca.issue(common_name=user, organizations=groups, client=True)

    def _kubeconfig_document(self, user: str, pair: _KeyPair) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.ca_pem),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(pair.cert_pem),
                        "client-key-data": _b64(pair.key_pem),
                    },
                }
            ],
            "contexts": [{"name": f"{user}@{CLUSTER_NAME}", "context": {"cluster": CLUSTER_NAME, "user": user}}],
            "current-context": f"{user}@{CLUSTER_NAME}",
            "preferences": {},
        }

    def _write_kubeconfig(self, path: Path, user: str, groups: Sequence[str]) -> _KeyPair:
        pair = self._client_pair(user, groups)
        # Certificates are embedded so the file can be copied or mounted elsewhere.
        document = self._kubeconfig_document(user, pair)
        _write(path, yaml.safe_dump(document, sort_keys=False).encode(), private=True)
        return pair

    def _write_kubeconfigs(self) -> None:
        admin = self._write_kubeconfig(self.kubeconfig, "admin", ["system:masters"])
        # The same credentials as files, for the readiness probes (urllib) and
        # for tools that want a cert/key pair rather than a kubeconfig.
        _write(self.pki_dir / "admin.crt", admin.cert_pem)
        _write(self.pki_dir / "admin.key", admin.key_pem, private=True)
        self._write_kubeconfig(self.nobody_kubeconfig, "nobody", [])
        # The controller manager acts under its own name, so the API server's
        # logs tell its requests apart; system:masters spares an RBAC bootstrap.
        self._write_kubeconfig(
            self.directory / "kubeconfigs" / "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            ["system:masters"],
        )
        self._write_kubeconfig(
            self.directory / "kubeconfigs" / "scheduler.kubeconfig", "system:kube-scheduler", ["system:masters"]
        )

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` in ``groups`` by client certificate.

        The user has no permissions until a test binds a Role or ClusterRole to
        it (or to one of its groups).
        """
        key = (user, tuple(groups))
        with self._lock:
            existing = self._user_kubeconfigs.get(key)
            if existing is not None:
                return existing
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join([user, *groups]))[:100]
            path = self.directory / "kubeconfigs" / "users" / f"{slug}-{len(self._user_kubeconfigs)}.kubeconfig"
            self._write_kubeconfig(path, user, groups)
            self._user_kubeconfigs[key] = path
            return path

    def issue_serving_certificate(
        self, *, hosts: Sequence[str] = ("127.0.0.1", "localhost"), name: str = "webhook"
    ) -> tuple[Path, Path]:
        """A serving certificate signed by the cluster's CA, e.g. for an admission webhook.

        Returns ``(cert_path, key_path)``; the API server trusts it when the
        webhook configuration's ``caBundle`` is ``base64(ca_pem)``.
        """
        if self._ca is None:
            raise RuntimeError("the control plane has not been started")
        ips: list[str] = []
        dns: list[str] = []
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                dns.append(host)
            else:
                ips.append(host)
        pair = self._ca.issue(common_name=name, dns_names=dns, ip_addresses=ips, server=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        cert = _write(self.pki_dir / "serving" / f"{safe}.crt", pair.cert_pem)
        key = _write(self.pki_dir / "serving" / f"{safe}.key", pair.key_pem, private=True)
        return cert, key

    def api_client(self, kubeconfig: str | Path | None = None) -> ApiClient:
        """A kubernetes ``ApiClient`` for the admin, or for the given kubeconfig."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    # ----------------------------------------------------------------- components

    def _spawn(self, name: str, argv: Sequence[str]) -> _Component:
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        log_file.write(("$ " + " ".join(argv) + "\n").encode())
        log_file.flush()
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            log_file.close()
            raise
        component = _Component(name, process, log_path, log_file, tuple(argv))
        self._components.append(component)
        return component

    def _fail(self, component: _Component | None, message: str) -> ControlPlaneError:
        if component is None:
            return ControlPlaneError(f"{message}; logs in {self.log_dir}", component=None, log_dir=self.log_dir)
        status = component.process.poll()
        state = "running" if status is None else f"exited with status {status}"
        return ControlPlaneError(
            f"{message} ({component.name} {state}); last lines of {component.log_path}:\n"
            f"{_tail(component.log_path)}\n(all logs kept in {self.log_dir})",
            component=component.name,
            log_dir=self.log_dir,
        )

    def _check_alive(self) -> None:
        for component in self._components:
            if component.process.poll() is not None:
                raise self._fail(component, f"{component.name} died during start-up")

    def _start_etcd(self, port: int, peer_port: int) -> None:
        self._etcd_port = port
        client_url = f"http://127.0.0.1:{port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(tools.etcd()),
                "--name=accord-local",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=accord-local={peer_url}",
                "--initial-cluster-state=new",
                # Tests create and drop namespaces constantly; a small history
                # keeps etcd's memory flat.
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=5m",
                "--log-level=warn",
            ],
        )

    def _wait_etcd(self, port: int, etcd: _Component | None = None) -> None:
        deadline = time.monotonic() + self._start_timeout
        etcd = etcd or self._components[-1]
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise self._fail(etcd, "etcd did not become healthy in time")

    def _resolve_extra(self, extra: ExtraArgs) -> list[str]:
        return list(extra(self) if callable(extra) else extra)

    def _start_apiserver(self, etcd_port: int) -> None:
        pki = self.pki_dir
        argv = [
            str(tools.kube_apiserver()),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self._apiserver_port}",
            # 1.20 still opens an unauthenticated port 8080 unless told not to.
            "--insecure-port=0",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={','.join(self._admission_plugins)}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # No kubelets and no real endpoints on loopback: the default
            # reconciler would keep rewriting the kubernetes Service's endpoints.
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
        argv += self._resolve_extra(self._extra_apiserver_args)
        self._spawn("kube-apiserver", argv)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_cert_path))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return context

    def _get(self, path: str, *, timeout: float = 3.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl_context()) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def _wait_healthy(self, what: str, probe: Callable[[], tuple[int, bytes]]) -> None:
        """Poll `probe` (an HTTP status and body) until it answers 200; the last answer goes in the error."""
        component = self._components[-1]
        deadline = time.monotonic() + self._start_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                status, body = probe()
                if status == 200:
                    return
                last = f"answered {status}: {body.decode(errors='replace')[-500:]}"
            except (OSError, ssl.SSLError) as exc:
                last = f"unreachable: {exc}"
            time.sleep(0.25)
        raise self._fail(component, f"{component.name} not {what} within {self._start_timeout:.0f}s ({last})")

    def _wait_apiserver_ready(self) -> None:
        self._wait_healthy("ready (/readyz)", lambda: self._get("/readyz"))

    def _controller_argv(self, binary: Path, name: str, port: int) -> list[str]:
        """What the controller manager and the scheduler share: their identity, loopback serving, no election."""
        kubeconfig = self.directory / "kubeconfigs" / f"{name}.kubeconfig"
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            # The deprecated insecure ports (10251, 10252) would clash between two
            # control planes on one machine.
            "--port=0",
            f"--cert-dir={self.pki_dir / name}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _start_controller_manager(self, port: int) -> None:
        pki = self.pki_dir
        argv = self._controller_argv(tools.kube_controller_manager(), "controller-manager", port)
        argv += [
            f"--controllers={','.join(self._controllers)}",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            # Lets tests go through the CSR API and get certificates the API
            # server accepts.
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        ]
        argv += self._resolve_extra(self._extra_cm_args)
        self._spawn("kube-controller-manager", argv)

    def _start_scheduler(self, port: int) -> None:
        argv = self._controller_argv(tools.kube_scheduler(), "scheduler", port)
        argv += self._resolve_extra(self._extra_scheduler_args)
        self._spawn("kube-scheduler", argv)

    def _wait_scheduler_healthy(self, port: int) -> None:
        context = ssl.create_default_context()
        # Its serving certificate is self-signed in --cert-dir; /healthz needs no client identity.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def healthz() -> tuple[int, bytes]:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=context) as r:
                return int(r.status), bytes(r.read())

        self._wait_healthy("healthy (/healthz)", healthz)

    def _wait_default_service_account(self) -> None:
        # Pods can only be admitted once the ServiceAccount controller and the
        # token controller have run in the namespace; waiting here means tests
        # that start right away see a working cluster.
        cm = self._components[-1]
        deadline = time.monotonic() + self._start_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                ns_status, _ = self._get("/api/v1/namespaces/default")
                sa_status, body = self._get("/api/v1/namespaces/default/serviceaccounts/default")
                if ns_status == 200 and sa_status == 200 and json.loads(body).get("secrets"):
                    return
                last = f"namespace: {ns_status}, serviceaccount: {sa_status}"
            except (OSError, ssl.SSLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise self._fail(cm, f"default ServiceAccount did not appear within {self._start_timeout:.0f}s ({last})")


# --------------------------------------------------------------------------- command line


@contextlib.contextmanager
def _signals_raise_keyboard_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a control plane, print how to reach it, and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m accord_dev.cluster.local",
        description="Run a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,"
        " kube-scheduler).",
    )
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory on exit")
    parser.add_argument(
        "--no-controller-manager", action="store_true", help="start neither the controller manager nor the scheduler"
    )
    parser.add_argument("--no-scheduler", action="store_true", help="start no scheduler (Pods stay unbound)")
    args = parser.parse_args(argv)

    plane = LocalControlPlane(
        directory=args.dir,
        keep_directory=args.keep,
        with_controller_manager=not args.no_controller_manager,
        with_scheduler=not (args.no_scheduler or args.no_controller_manager),
    )
    started = time.monotonic()
    with _signals_raise_keyboard_interrupt():
        try:
            plane.start()
        except ControlPlaneError as exc:
            print(exc, file=sys.stderr)
            return 1
        try:
            print(f"control plane ready in {time.monotonic() - started:.1f}s at {plane.url}")
            print(f"admin kubeconfig:  {plane.kubeconfig}")
            print(f"nobody kubeconfig: {plane.nobody_kubeconfig}")
            print(f"logs:              {plane.log_dir}")
            for name, pid in plane.pids.items():
                print(f"  {name}: pid {pid}")
            print(f"\n  export KUBECONFIG={plane.kubeconfig}\n\nCtrl-C to stop.", flush=True)
            expected = len(plane.pids)
            while True:
                if len(plane.pids) < expected:
                    print(f"a component exited; logs in {plane.log_dir}", file=sys.stderr)
                    return 1
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping…")
        finally:
            plane.stop()
            if args.keep:
                print(f"kept {plane.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
