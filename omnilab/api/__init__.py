"""The HTTP API (``omnilab serve``): FastAPI app, API keys, server-sent logs."""

from omnilab.api.app import create_app

__all__ = ["create_app"]
