"""The operator's errors, each saying what happens next (operator layer)."""

from __future__ import annotations


class AccordError(Exception):
    """Base of Accord's own errors."""


class StaleDecision(AccordError):  # noqa: N818 - the name says what it is to a reader of the logs
    """The workload changed after the decision was made; the decision is superseded, not applied."""


class AutoscalerConflict(AccordError):  # noqa: N818
    """Another autoscaler manages the workload's replicas and the policy does not coordinate with it."""
