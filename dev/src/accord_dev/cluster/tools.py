"""Where the binaries of the test clusters live.

Development and test infrastructure, not used by the operator itself.

``scripts/install-tools.sh`` builds or downloads kube-apiserver,
kube-controller-manager, kube-scheduler, kubectl and helm into a cache outside the clone and
installs etcd and Prometheus from Debian. This module finds them with the same
rules as the script (``ACCORD_CACHE``, default ``~/.cache/accord``;
``KUBEBUILDER_ASSETS`` first for the control-plane binaries) and says how to get
them when they are missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = [
    "K8S_VERSION",
    "ToolNotFoundError",
    "cache_dir",
    "etcd",
    "helm",
    "k8s_bin_dir",
    "kube_apiserver",
    "kube_controller_manager",
    "kube_scheduler",
    "kubectl",
    "prometheus",
    "promtool",
]

K8S_VERSION = "1.20.2"

_INSTALL_HINT = "run `bash scripts/install-tools.sh` from the repository root to install it"


class ToolNotFoundError(FileNotFoundError):
    """A binary the test clusters need is not installed."""

    def __init__(self, name: str, searched: list[Path]) -> None:
        where = ", ".join(str(p) for p in searched) or "nowhere"
        super().__init__(f"{name} not found (looked in: {where}); {_INSTALL_HINT}")
        self.name = name
        self.searched = searched


def cache_dir() -> Path:
    """The cache directory shared with ``scripts/install-tools.sh``."""
    configured = os.environ.get("ACCORD_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "accord"


def _assets_dir() -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / "kube-apiserver").is_file():
        return Path(assets)
    return None


def k8s_bin_dir() -> Path:
    """The directory the control-plane binaries are taken from."""
    return _assets_dir() or cache_dir() / f"k8s-v{K8S_VERSION}" / "bin"


def _first_executable(name: str, candidates: list[Path], *, on_path: bool = False) -> Path:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = list(candidates)
    if on_path:
        found = shutil.which(name)
        if found:
            return Path(found)
        searched.append(Path("$PATH"))
    raise ToolNotFoundError(name, searched)


def _control_plane_candidates(name: str) -> list[Path]:
    # envtest's asset bundles carry kube-apiserver and etcd but not
    # kube-controller-manager, so the cache is still consulted after them.
    candidates: list[Path] = []
    assets = _assets_dir()
    if assets is not None:
        candidates.append(assets / name)
    candidates.append(cache_dir() / f"k8s-v{K8S_VERSION}" / "bin" / name)
    return candidates


def kube_apiserver() -> Path:
    """kube-apiserver v1.20.2 (or the one in ``KUBEBUILDER_ASSETS``)."""
    return _first_executable("kube-apiserver", _control_plane_candidates("kube-apiserver"))


def kube_controller_manager() -> Path:
    """kube-controller-manager v1.20.2."""
    return _first_executable("kube-controller-manager", _control_plane_candidates("kube-controller-manager"))


def kube_scheduler() -> Path:
    """kube-scheduler v1.20.2."""
    return _first_executable("kube-scheduler", _control_plane_candidates("kube-scheduler"))


def etcd() -> Path:
    """etcd: from ``KUBEBUILDER_ASSETS``, the cache's symlink, or Debian's etcd-server."""
    return _first_executable("etcd", [*_control_plane_candidates("etcd"), Path("/usr/bin/etcd")], on_path=True)


def kubectl() -> Path:
    """kubectl from the cache; one on ``PATH`` is only a fallback (it may be of any version)."""
    return _first_executable("kubectl", [cache_dir() / "bin" / "kubectl"], on_path=True)


def helm() -> Path:
    """helm from the cache, else from ``PATH``."""
    return _first_executable("helm", [cache_dir() / "bin" / "helm"], on_path=True)


def prometheus() -> Path:
    """Debian's Prometheus server."""
    return _first_executable("prometheus", [Path("/usr/bin/prometheus")], on_path=True)


def promtool() -> Path:
    """Prometheus's promtool (Debian ships it in the ``prometheus`` package), e.g. to backfill a TSDB."""
    return _first_executable("promtool", [Path("/usr/bin/promtool")], on_path=True)


def run_kubectl(kubeconfig: Path, *args: str, input_: str | None = None, timeout: float = 600) -> str:
    """Run the cached kubectl against `kubeconfig`; its stdout, or RuntimeError with its stderr."""
    import subprocess

    result = subprocess.run(
        [str(kubectl()), f"--kubeconfig={kubeconfig}", *args],
        input=input_,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout
