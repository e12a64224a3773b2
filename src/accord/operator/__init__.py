"""The kopf operator: handlers, the negotiation loop, the executor, approvals, /metrics (operator layer)."""
