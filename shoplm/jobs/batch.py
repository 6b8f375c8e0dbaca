"""Batch jobs on Ray (`pip install 'shoplm[ray]'`), each a thin wrapper over a function that
also runs in-process, so a laptop and a cluster run the same code:

- `embed_catalog`: Ray Data `map_batches` of the encoder over the catalog -> Parquet
  (item_id, vector); in-process: `Encoder.encode`.
- `recommend_all`: every user's top k, as the serving engine answers them -> Parquet
  (user_id, rank, item_id, score); in-process: `recommend_users`.

`address=None` starts a local Ray; `address="ray://host:10001"` or `"auto"` joins a cluster.
Each Ray worker builds what it needs once (an encoder, an engine) in the constructor of a
callable class, as Ray Data runs such classes on long-lived actors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.config import Settings


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


# --- embed --------------------------------------------------------------------------------

class EmbedBatch:
    """Ray Data UDF: {"item_id", "text"} -> {"item_id", "vector"} with one encoder per actor."""

    def __init__(self, settings: dict):
        from shoplm.lm.encoder import Encoder

        self.encoder = Encoder.from_settings(Settings(**settings))

    def __call__(self, batch: dict) -> dict:
        vectors = self.encoder.encode(list(batch["text"]))  # (b, dim)
        return {"item_id": batch["item_id"], "vector": list(vectors)}


def embed_catalog(items: Path, out: Path, settings: Settings, address: str | None = None,
                  workers: int = 2, batch_size: int = 256) -> int:
    """Encode every item of `items` on Ray, writing Parquet files under `out`; returns the count."""
    import ray

    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts

    catalog = read_items(Path(items))
    rows = [{"item_id": item.item_id, "text": text}
            for item, text in zip(catalog, item_texts(catalog, settings.item_text_template))]
    start_ray(address, num_cpus=None if address else workers)
    dataset = ray.data.from_items(rows).map_batches(
        EmbedBatch, fn_constructor_kwargs={"settings": _portable(settings)}, batch_size=batch_size,
        concurrency=workers, num_cpus=1)
    dataset.write_parquet(str(out))
    return len(rows)


def read_embeddings(out: Path) -> tuple[list[str], np.ndarray]:
    """(item ids, float32 (n, dim)) from what `embed_catalog` wrote."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(out))
    return table.column("item_id").to_pylist(), np.asarray(table.column("vector").to_pylist(), dtype=np.float32)


# --- recommend-all ------------------------------------------------------------------------

def recommend_users(engine, user_ids: Sequence[str], k: int) -> list[dict]:
    """In-process: the engine's top k for each user, as rows."""
    rows = []
    for user in user_ids:
        for rank, rec in enumerate(engine.recommend(user_id=user, k=k), start=1):
            rows.append({"user_id": user, "rank": rank, "item_id": rec.item_id, "score": float(rec.score)})
    return rows


class RecommendBatch:
    """Ray Data UDF: {"user_id"} -> rows of `recommend_users`, with one engine per actor."""

    def __init__(self, settings: dict, k: int):
        from shoplm.engine.engine import Engine
        from shoplm.store import open_store

        config = Settings(**settings)
        # recommend_all built the indexes, so this finds them current; a worker on a machine that
        # does not share the directory builds its own
        self.engine = Engine.open(config, open_store(config.store_url))
        self.k = k

    def __call__(self, batch: dict) -> dict:
        rows = recommend_users(self.engine, [str(u) for u in batch["user_id"]], self.k)
        return {name: [row[name] for row in rows] for name in ("user_id", "rank", "item_id", "score")}


def recommend_all(settings: Settings, out: Path, k: int = 10, address: str | None = None, workers: int = 2,
                  batch_size: int = 256) -> int:
    """Top k for every user in the store, on Ray, written as Parquet under `out`; returns the user count."""
    import ray

    from shoplm.atomic import dir_lock
    from shoplm.search.pipeline import ensure_indexes
    from shoplm.store import open_store

    store = open_store(settings.store_url)
    users = sorted(u for u in store.events_frame()["user_id"].drop_nulls().unique().to_list())
    items = store.items()
    store.close()
    if items:  # once, here, before the workers start: each of them then finds them current
        with dir_lock(settings.search_index_dir):
            ensure_indexes(items, settings, settings.search_index_dir)
    start_ray(address, num_cpus=None if address else workers)
    dataset = ray.data.from_items([{"user_id": u} for u in users]).map_batches(
        RecommendBatch, fn_constructor_kwargs={"settings": _portable(settings), "k": k}, batch_size=batch_size,
        concurrency=workers, num_cpus=1)
    dataset.write_parquet(str(out))
    return len(users)


def _portable(settings: Settings) -> dict:
    """Settings as plain values for the workers (secrets included: workers may serve)."""
    values = settings.model_dump()
    for name in ("read_key", "admin_key"):
        if values.get(name) is not None:
            values[name] = getattr(settings, name).get_secret_value()
    return values
