"""Evidence and its sources (metrics layer): value types with provenance, and the Prometheus queries."""
