"""Storage shared by every stage: the Parquet IO manager and the files handed to engines
(``parquet_io_manager.py``, ``parquet_files.py``), the MLflow model registry (``model_registry.py``),
object-store connections (``connection.py``) and credentials (``credentials.py``), atomic file
helpers (``files.py``) and the instance's record of materializations (``materializations.py``).

May import: nothing else of the package (engines write through the ``SelfWritingTable`` protocol).
"""
