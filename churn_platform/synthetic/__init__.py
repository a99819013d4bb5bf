"""Deterministic synthetic CRM tickets and interaction logs for demos and tests."""
