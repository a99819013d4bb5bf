"""Deterministic synthetic CRM tickets and interaction logs for demos, tests and benchmarks:
the generator (``generator.py``, ``text.py``) and writing it to the landing zone (``writer.py``).

May import: storage and the landing-zone/export writers of the logs and crm stages.
"""
