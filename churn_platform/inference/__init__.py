"""The ``inference`` stage: the scoring service's predictions, logged to the landing zone
(``log.py``: the format, its writer and reader) and ingested daily as raw/inference_logs
(``assets.py``), from the landing zone its resource names (``resources.py``).

May import: settings, storage, orchestration (the shared layers); never another stage.
"""
