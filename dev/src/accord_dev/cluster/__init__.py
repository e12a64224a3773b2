"""Real clusters for the end-to-end suite and for demos.

Development and test infrastructure, not used by the operator itself: nothing
under ``accord.operator`` imports this package.

- :mod:`accord_dev.cluster.tools`: where the binaries live (``scripts/install-tools.sh`` puts them there).
- :mod:`accord_dev.cluster.local`: etcd + kube-apiserver + kube-controller-manager + kube-scheduler
  on loopback (``python -m accord_dev.cluster.local``).
- :mod:`accord_dev.cluster.kubelets`: simulated Nodes and kubelets (pools, heartbeats, pods going
  Running and Ready, drain, loss, spot reclaim), as kwok does.
- :mod:`accord_dev.cluster.prometheus`: a throw-away Prometheus server.
- :mod:`accord_dev.cluster.emulator`: emulated workload metrics that follow the Deployments' replicas
  (``python -m accord_dev.cluster.emulator``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accord_dev.cluster.emulator import Trace, WorkloadEmulator, WorkloadSample
    from accord_dev.cluster.local import ControlPlaneError, LocalControlPlane
    from accord_dev.cluster.prometheus import PrometheusError, PrometheusServer
    from accord_dev.cluster.tools import ToolNotFoundError

__all__ = [
    "ControlPlaneError",
    "LocalControlPlane",
    "PrometheusError",
    "PrometheusServer",
    "ToolNotFoundError",
    "Trace",
    "WorkloadEmulator",
    "WorkloadSample",
]

# Imported on first use: `python -m accord_dev.cluster.local` would otherwise find
# its own module already imported by this package and run it twice.
_HOMES = {
    "ControlPlaneError": "local",
    "LocalControlPlane": "local",
    "PrometheusError": "prometheus",
    "PrometheusServer": "prometheus",
    "ToolNotFoundError": "tools",
    "Trace": "emulator",
    "WorkloadEmulator": "emulator",
    "WorkloadSample": "emulator",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"accord_dev.cluster.{home}"), name)
