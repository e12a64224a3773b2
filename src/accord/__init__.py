"""Accord: a Kubernetes operator in which agents negotiate scaling and placement decisions."""

__version__ = "0.1.0"
