"""Offline recommendations computed in DuckDB.

Imports run one way, down this list: config (settings, result types, the event vocabulary),
tables (the workspace's catalog and events under integer keys), taste and ease (the vector
and EASE maths), scorer (the engine; its docstring holds the formulas), metrics, tuning (the
fit of the blend), api (recommend, recommend_all, tune, evaluate).
"""
