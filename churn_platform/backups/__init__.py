"""The ``backups`` stage: backups/model_snapshot and backups/platform_metadata (``assets.py``), when
they run (``automation.py``), what a metadata snapshot copies (``metadata.py``), lineage manifests
(``manifest.py``), listing, verifying and restoring snapshots (``catalog.py``) and the write-once
backup store (``resources.py``).

May import: orchestration, settings, storage. Meets the ml stage only through asset keys.
"""
