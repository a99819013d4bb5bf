"""Backups of models and their training lineage, in a separate write-once location."""
