"""Offline recommendations computed in DuckDB: scoring, taste profiles, evaluation."""
