"""Cluster providers for the end-to-end suite.

- ``local`` (default): :class:`accord_dev.cluster.local.LocalControlPlane`, a real
  etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback. No Docker.
- ``kind``: a kind cluster with the operator image built from the repository's
  Dockerfile, loaded into the cluster and installed with the chart in ``helm/accord``.
- ``existing``: whatever cluster ``KUBECONFIG`` (or ``~/.kube/config``) points at.

Each provider gives the suite a :class:`Cluster`: an admin kubeconfig, a
kubeconfig of a user with no permissions, a way to mint kubeconfigs for other
users (directly from the local CA, or through the CertificateSigningRequest API
elsewhere), and kubectl/helm runners.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest
import yaml

from accord_dev.cluster import tools
from accord_dev.cluster.local import LocalControlPlane

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("local", "kind", "existing")
NOBODY_USER = "accord-e2e-nobody"

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    message: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    Exceptions from the probe count as "not yet"; the last one (or the last
    value) is reported when time runs out, so a failing wait says why.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the cluster handle


@dataclass
class Cluster:
    """What a provider hands the tests."""

    provider: str
    kubeconfig: Path
    nobody_kubeconfig: Path | None = None
    nobody_unavailable: str = ""
    mint: Callable[[str, Sequence[str]], Path] | None = None
    mint_unavailable: str = ""
    operator_installed: bool = False
    control_plane: LocalControlPlane | None = None
    _clients: list[Any] = field(default_factory=list)

    def api_client(self, kubeconfig: str | Path | None = None) -> ApiClient:
        """A new kubernetes ``ApiClient`` (admin unless another kubeconfig is given)."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def require_nobody(self) -> Path:
        if self.nobody_kubeconfig is None:
            pytest.skip(f"no permission-less user on the {self.provider} cluster: {self.nobody_unavailable}")
        return self.nobody_kubeconfig

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for ``user`` in ``groups`` (no permissions until a test binds some)."""
        if self.mint is None:
            pytest.skip(f"cannot mint users on the {self.provider} cluster: {self.mint_unavailable}")
        return self.mint(user, groups)

    def kubectl(
        self,
        *args: str,
        kubeconfig: str | Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with its output when it fails and ``check``."""
        argv = [str(tools.kubectl()), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return _run(argv, input=input, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        argv = [str(tools.helm()), f"--kubeconfig={self.kubeconfig}", *args]
        return _run(argv, check=check, timeout=timeout)


def _run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{shlex.join(argv)}` exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


# --------------------------------------------------------------------------- users through the CSR API


def _current_cluster_entry(kubeconfig: Path) -> dict[str, Any]:
    document = yaml.safe_load(kubeconfig.read_text())
    context_name = document.get("current-context")
    contexts = {c["name"]: c["context"] for c in document.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in document.get("clusters", [])}
    context = contexts[context_name]
    entry = dict(clusters[context["cluster"]])
    ca_file = entry.pop("certificate-authority", None)
    if ca_file:
        # Embedded so the minted kubeconfig works wherever it is written.
        ca_path = Path(ca_file)
        if not ca_path.is_absolute():
            ca_path = kubeconfig.parent / ca_path
        entry["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
    return entry


def mint_user_via_csr(
    *, admin: Cluster, directory: Path, user: str, groups: Sequence[str] = (), timeout: float = 60.0
) -> Path:
    """A client-certificate kubeconfig signed by the cluster's own signer.

    Works on any cluster whose controller manager signs
    ``kubernetes.io/kube-apiserver-client`` requests and where the admin may
    approve them (kind, kubeadm clusters, the local control plane).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from kubernetes import client

    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    csr_pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    name = f"accord-e2e-{re.sub(r'[^a-z0-9-]+', '-', user.lower())[:40]}-{secrets.token_hex(3)}"
    certificates = client.CertificatesV1Api(admin.api_client())
    certificates.create_certificate_signing_request(
        client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(csr_pem).decode(),
                signer_name="kubernetes.io/kube-apiserver-client",
                usages=["client auth"],
            ),
        )
    )
    try:
        csr = certificates.read_certificate_signing_request(name)
        csr.status = client.V1CertificateSigningRequestStatus(
            conditions=[
                client.V1CertificateSigningRequestCondition(
                    type="Approved",
                    status="True",
                    reason="AccordE2E",
                    message="approved by the end-to-end suite",
                )
            ]
        )
        certificates.replace_certificate_signing_request_approval(name, csr)

        def issued() -> str | None:
            status = certificates.read_certificate_signing_request(name).status
            # The client returns the base64 text of the PEM, as in the API's JSON.
            return str(status.certificate) if status is not None and status.certificate else None

        certificate_b64 = wait_until(issued, timeout=timeout, message=f"CSR {name} to be signed")
    finally:
        certificates.delete_certificate_signing_request(name)

    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cluster_name = "e2e"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": _current_cluster_entry(admin.kubeconfig)}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": certificate_b64,
                    "client-key-data": base64.b64encode(key_pem).decode(),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": user,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def _attach_csr_users(cluster: Cluster, directory: Path) -> None:
    def mint(user: str, groups: Sequence[str]) -> Path:
        return mint_user_via_csr(admin=cluster, directory=directory, user=user, groups=groups)

    try:
        cluster.nobody_kubeconfig = mint(NOBODY_USER, ())
    except Exception as exc:
        reason = f"the CSR API did not issue a client certificate ({exc})"
        cluster.nobody_unavailable = reason
        cluster.mint_unavailable = reason
        return
    cluster.mint = mint


# --------------------------------------------------------------------------- providers


class ClusterProvider(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """Why this provider cannot run here, or None."""

    def start(self) -> Cluster: ...

    def stop(self) -> None: ...


def _keep() -> bool:
    return os.environ.get("ACCORD_E2E_KEEP", "") == "1"


class LocalProvider:
    """A LocalControlPlane for the session."""

    name = "local"

    def __init__(self) -> None:
        self._plane: LocalControlPlane | None = None

    def unavailable_reason(self) -> str | None:
        try:
            tools.kube_apiserver()
            tools.kube_controller_manager()
            tools.kube_scheduler()
            tools.etcd()
            tools.kubectl()
        except tools.ToolNotFoundError as exc:
            return str(exc)
        return None

    def start(self) -> Cluster:
        plane = LocalControlPlane(keep_directory=_keep())
        plane.start()
        self._plane = plane
        return Cluster(
            provider=self.name,
            kubeconfig=plane.kubeconfig,
            nobody_kubeconfig=plane.nobody_kubeconfig,
            mint=plane.user_kubeconfig,
            control_plane=plane,
        )

    def stop(self) -> None:
        if self._plane is not None:
            self._plane.stop()
            self._plane = None


class ExistingProvider:
    """The cluster of ``KUBECONFIG``: nothing is created or deleted except test namespaces."""

    name = "existing"

    def __init__(self) -> None:
        self._tmp: Path | None = None

    def _kubeconfig(self) -> Path:
        configured = os.environ.get("KUBECONFIG", "")
        first = configured.split(os.pathsep)[0] if configured else ""
        return Path(first).expanduser() if first else Path.home() / ".kube" / "config"

    def unavailable_reason(self) -> str | None:
        path = self._kubeconfig()
        if not path.is_file():
            return f"no kubeconfig at {path} (set KUBECONFIG)"
        return None

    def start(self) -> Cluster:
        cluster = Cluster(provider=self.name, kubeconfig=self._kubeconfig())
        cluster.kubectl("version", timeout=30)
        self._tmp = Path(tempfile.mkdtemp(prefix="accord-e2e-existing-"))
        _attach_csr_users(cluster, self._tmp)
        return cluster

    def stop(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class KindProvider:
    """A fresh kind cluster with the operator built from this repository and installed by helm."""

    name = "kind"
    chart = REPO_ROOT / "helm" / "accord"
    dockerfile = REPO_ROOT / "Dockerfile"
    release = "accord"
    release_namespace = "accord-system"

    def __init__(self) -> None:
        self._cluster_name = os.environ.get("ACCORD_E2E_KIND_CLUSTER") or f"accord-e2e-{secrets.token_hex(3)}"
        self._image = f"accord-operator:e2e-{secrets.token_hex(3)}"
        self._tmp: Path | None = None
        self._created = False

    def unavailable_reason(self) -> str | None:
        # Every missing piece at once, so one run tells the whole story.
        reasons: list[str] = []
        if shutil.which("docker") is None:
            reasons.append("`docker` not found on PATH")
        else:
            try:
                info = subprocess.run(
                    ["docker", "info", "--format", "{{.ServerVersion}}"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                reasons.append("docker engine not reachable (`docker info` timed out after 30s)")
            else:
                if info.returncode != 0:
                    detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
                    reasons.append(f"docker engine not reachable (`docker info`: {detail})")
        if shutil.which("kind") is None:
            reasons.append("`kind` not found on PATH")
        for tool in (tools.helm, tools.kubectl):
            try:
                tool()
            except tools.ToolNotFoundError as exc:
                reasons.append(str(exc))
        if not self.dockerfile.is_file():
            reasons.append(f"no Dockerfile at {self.dockerfile} to build the operator image from")
        if not (self.chart / "Chart.yaml").is_file():
            reasons.append(f"no helm chart at {self.chart}")
        return "; ".join(reasons) or None

    def start(self) -> Cluster:
        self._tmp = Path(tempfile.mkdtemp(prefix="accord-e2e-kind-"))
        kubeconfig = self._tmp / "kubeconfig"
        create = [
            "kind",
            "create",
            "cluster",
            f"--name={self._cluster_name}",
            f"--kubeconfig={kubeconfig}",
            "--wait=180s",
        ]
        node_image = os.environ.get("ACCORD_E2E_KIND_NODE_IMAGE")
        if node_image:
            create.append(f"--image={node_image}")
        self._created = True
        try:
            _run(create, timeout=600)
            _run(["docker", "build", "-t", self._image, "-f", str(self.dockerfile), str(REPO_ROOT)], timeout=1800)
            _run(["kind", "load", "docker-image", self._image, f"--name={self._cluster_name}"], timeout=600)
            cluster = Cluster(provider=self.name, kubeconfig=kubeconfig)
            repository, _, tag = self._image.partition(":")
            cluster.helm(
                "upgrade",
                "--install",
                self.release,
                str(self.chart),
                f"--namespace={self.release_namespace}",
                "--create-namespace",
                f"--set=image.repository={repository}",
                f"--set=image.tag={tag}",
                # The image exists only inside the kind nodes.
                "--set=image.pullPolicy=Never",
                "--wait",
                "--timeout=5m",
                *shlex.split(os.environ.get("ACCORD_E2E_HELM_ARGS", "")),
            )
            cluster.operator_installed = True
            _attach_csr_users(cluster, self._tmp / "users")
            return cluster
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._created and not _keep():
            _run(["kind", "delete", "cluster", f"--name={self._cluster_name}"], check=False, timeout=300)
        self._created = False
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def make_provider(name: str) -> ClusterProvider:
    providers: dict[str, Callable[[], ClusterProvider]] = {
        "local": LocalProvider,
        "kind": KindProvider,
        "existing": ExistingProvider,
    }
    try:
        return providers[name]()
    except KeyError:
        raise ValueError(f"unknown cluster provider {name!r}; choose one of {', '.join(PROVIDERS)}") from None
