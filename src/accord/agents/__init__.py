"""The agents (agents layer): one module per agent, each pure, with a typed settings model."""
