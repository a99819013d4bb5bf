"""Where the feature SQL runs: ``base`` (the engine interface and shared SQL types), ``duckdb``
(embedded, default) and ``spark`` (+ ``spark_files``, Spark's own warehouse IO).

May import: settings, storage.
"""
