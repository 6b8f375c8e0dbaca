"""The HTTP service: `create_app(Settings())` builds a FastAPI app over an `Engine`."""

__all__ = ["create_app"]


def __getattr__(name: str):
    # Imported on first use: `shoplm serve --workers N` runs its dispatcher from this package,
    # and that process only forwards connections, so it need not load torch and the engine.
    if name == "create_app":
        from shoplm.api.app import create_app

        return create_app
    raise AttributeError(f"module 'shoplm.api' has no attribute {name!r}")
