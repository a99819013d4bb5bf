"""Online features: each day's customer features loaded into Redis for the scoring service.

May import: settings, storage, orchestration (the shared layers); never another stage.
"""
