"""The ``features`` stage: features/customer_daily_activity and features/customer_features
(``assets.py``), each defined once as SQL (``activity.py``, ``rolling.py``) and run by a feature engine.

May import: engines, orchestration, settings, storage. Meets raw/enriched only through asset keys.
"""
