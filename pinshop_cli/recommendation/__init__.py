"""Offline recommendations computed in DuckDB.

Imports run one way, down this list: config (settings, result types, the event vocabulary),
tables (the workspace's catalog and events under integer keys), taste and ease (the vector
and EASE maths), style (style clusters of the product vectors), trends and tastemates
(components the scorer builds), scorer (the engine; its docstring holds the formulas),
session (the browsing session's pull), mmr, serendipity and reasons (the final list, its
slot for something different, and its reasons), metrics, novelty and significance (how
good, how varied, more than noise?), tuning (the fit of the blend), api (recommend,
recommend_all, tune, evaluate).
"""
