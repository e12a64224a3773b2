"""Accord's development harness: what the tests, the benchmarks and the demo run, never the operator.

A distribution of its own (`accord-dev`, from `dev/` in the repository), so that the production
wheel and image hold none of it:

- :mod:`accord_dev.cluster`: a local control plane (etcd, kube-apiserver, kube-controller-manager
  on loopback, with a certificate authority that mints client certificates), a throw-away
  Prometheus, and a workload emulator that serves metrics over plain HTTP;
- :mod:`accord_dev.demo`: `accord-demo`, the operator at work on a local cluster (`scripts/demo.sh`).

`scripts/setup-python.sh` installs it, editable, beside Accord.
"""
