"""The ``ml`` stage: labels, training set, churn model, scores and feature drift (``assets.py``),
their checks (``checks.py``), the promotion gate (``promotion.py``), training (``training.py``),
scoring (``scoring.py``), drift (``drift.py``) and plots. The MLflow registry resource is shared
storage (``storage/model_registry.py``).

May import: engines, orchestration, settings, storage. Meets features only through asset keys.
"""
