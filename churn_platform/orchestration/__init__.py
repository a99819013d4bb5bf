"""How and when the platform runs: asset keys (``asset_keys.py``), partitions and the windows
assets read (``partitions.py``), automation conditions and their sensor (``automation.py``),
retry policies (``retries.py``), jobs (``jobs.py``), schedules (``schedules.py``), run tags
(``run_tags.py``), asset backfills over the webserver (``backfills.py``, ``graphql.py``), partition
deadlines (freshness SLAs) and which partitions are late (``freshness.py``).

May import: settings. Stages import it; it imports no stage.
"""
