"""Real clusters for the end-to-end suite and for demos.

Development and test infrastructure, not used by the operator itself: nothing
under ``accord.operator`` imports this package.

- :mod:`accord.cluster.tools`: where the binaries live (``scripts/install-tools.sh`` puts them there).
- :mod:`accord.cluster.local`: etcd + kube-apiserver + kube-controller-manager on loopback.
- :mod:`accord.cluster.prometheus`: a throw-away Prometheus server.
- :mod:`accord.cluster.emulator`: emulated workload metrics that follow the Deployments' replicas.
"""

from accord.cluster.emulator import Trace, WorkloadEmulator, WorkloadSample
from accord.cluster.local import ControlPlaneError, LocalControlPlane
from accord.cluster.prometheus import PrometheusError, PrometheusServer
from accord.cluster.tools import ToolNotFoundError

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
