"""The ``logs`` stage: raw/interaction_logs (``assets.py``), the landing zone it reads
(``landing_zone.py``), log parsing and validation (``parsing.py``) and the landing sensor (``sensors.py``).

May import: orchestration, settings, storage. No other stage.
"""
