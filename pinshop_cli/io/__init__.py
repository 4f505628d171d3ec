"""Inputs: catalog normalization, pin discovery, safe image decoding, events."""
