"""Alerts: the run-failure, outbox-retry and retraining-notice sensors (``sensors.py``), the
durable outbox every failure alert goes through (``outbox.py``), what an alert says
(``messages.py``) and the Slack webhook resource (``resources.py``).

May import: orchestration, settings, storage and the CRM resource (to open tickets): it sits
above the stages, like ``definitions.py``, and no stage imports it.
"""
