"""The pure negotiation engine: candidates, protocols, rules, trust (negotiation layer)."""
