"""Alerts: the run-failure, outbox-retry and retraining-notice sensors (``sensors.py``), the
late-partition sensor (``freshness.py``) and the check-failure sensor (``check_alerts.py``), the
durable outbox every alert goes through (``outbox.py``), what an alert says (``messages.py``) and
the Slack webhook resource (``resources.py``).

May import: orchestration, settings, storage and the CRM resource (to open tickets): it sits
above the stages, like ``definitions.py``, and no stage imports it.
"""
