"""The ``backups`` stage: backups/model_snapshot (``assets.py``), lineage manifests
(``manifest.py``) and the write-once backup store (``resources.py``).

May import: orchestration, settings, storage. Meets the ml stage only through asset keys.
"""
