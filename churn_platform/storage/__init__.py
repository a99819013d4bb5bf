"""Storage shared by every stage: Parquet tables, model artifacts, and the file helpers below them."""
