"""`pinshop serve`: the Shop over HTTP (FastAPI on uvicorn). The web layer parses, guards
and serializes; every answer is one call on the Shop (pinshop_cli/shop.py)."""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
