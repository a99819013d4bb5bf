"""Data contracts: each raw and feature asset's columns, types and rules, declared once
(``interaction_logs.py``, ``features.py``), how a contract is shown in the Dagster UI and checked
(``declare.py``), and where rows that break a rule are kept (``quarantine.py``).

The rules run inside the engine that reads the data (DuckDB SQL for the landing files), so checking
costs no second pass; the same declaration renders the column schema the UI shows.

May import: settings, storage (the shared layers below); the stages import it, never the reverse.
"""
