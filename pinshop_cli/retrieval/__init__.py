"""Retrieval: catalog filters -> index search -> product rows; `match` on top of it."""
