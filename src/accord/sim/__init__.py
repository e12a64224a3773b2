"""Replay of demand traces through the same agents and engine the operator uses (sim layer)."""
