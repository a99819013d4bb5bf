"""The ``ml`` stage: labels, training set, churn model, scores and feature drift (``assets.py``),
their checks (``checks.py``), the promotion gate (``promotion.py``), training (``training.py``),
scoring (``scoring.py``), drift (``drift.py``), plots and the MLflow resource (``tracking.py``).

May import: engines, orchestration, settings, storage. Meets features only through asset keys.
"""
