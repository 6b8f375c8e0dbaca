"""The HTTP service: `create_app(Settings())` builds a FastAPI app over an `Engine`."""

from shoplm.api.app import create_app

__all__ = ["create_app"]
