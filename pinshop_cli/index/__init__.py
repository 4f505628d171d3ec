"""HNSW indexes over the workspace embeddings, with manifests and staleness checks."""
