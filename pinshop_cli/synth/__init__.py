"""Synthetic data generators: shoppers' events, and catalogs for scale benchmarks."""
