"""Ingest: catalog -> product embeddings; pins -> detections -> crops -> crop embeddings."""
