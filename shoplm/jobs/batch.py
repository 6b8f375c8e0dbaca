"""Batch jobs on Ray (`pip install 'shoplm[ray]'`), each a thin wrapper over a function that
also runs in-process, so a laptop and a cluster run the same code:

- `embed_catalog`: Ray Data `map_batches` of the encoder over the catalog -> Parquet
  (item_id, text_hash, vector) and `embeddings.json`; in-process: `Encoder.encode`, resumable.
  `shoplm index build --embeddings` reads it, for catalogs too big to encode where they are served.
- `recommend_all`: every user's top k, as the serving engine answers them -> Parquet
  (user_id, rank, item_id, score); in-process: `recommend_users`.

`address=None` starts a local Ray; `address="ray://host:10001"` or `"auto"` joins a cluster.
Each Ray worker builds what it needs once (an encoder, an engine) in the constructor of a
callable class, as Ray Data runs such classes on long-lived actors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from shoplm.atomic import write_text
from shoplm.config import Settings
from shoplm.errors import ConfigError
from shoplm.progress import Counter, Progress, quiet


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


# --- embed --------------------------------------------------------------------------------

MANIFEST = "embeddings.json"  # beside the Parquet files: which model wrote them, and how many
PART_ROWS = 50_000  # items per Parquet file of the in-process job, each written whole


class Embeddings(NamedTuple):
    ids: list[str]
    hashes: np.ndarray  # uint8[n, 16]: `shoplm.lm.cache.text_hash` of the text each vector encodes
    vectors: np.ndarray  # float32[n, dim]
    fingerprint: str  # the encoder's (`Encoder.fingerprint`)


class EmbedBatch:
    """Ray Data UDF: {"item_id", "text"} -> {"item_id", "text_hash", "vector"} with one encoder per actor."""

    def __init__(self, settings: dict):
        from shoplm.lm.encoder import Encoder

        self.encoder = Encoder.from_settings(Settings(**settings))

    def __call__(self, batch: dict) -> dict:
        from shoplm.lm.cache import text_hash

        texts = list(batch["text"])
        vectors = self.encoder.encode(texts)  # (b, dim)
        return {"item_id": batch["item_id"], "text_hash": [text_hash(t) for t in texts], "vector": list(vectors)}


def embed_catalog(items: Path, out: Path, settings: Settings, address: str | None = None, workers: int = 2,
                  batch_size: int = 256, in_process: bool = False, progress: Progress = quiet) -> int:
    """Encode every item of `items` into Parquet files (item_id, text_hash, vector) under `out`,
    on Ray, or here with `in_process` (then in files of `PART_ROWS`, and a re-run after an
    interruption keeps every file whose items and texts are unchanged); returns the count.
    `shoplm index build --embeddings out` builds the search index from them."""
    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts
    from shoplm.lm.encoder import Encoder

    catalog = read_items(Path(items))
    ids, texts = [item.item_id for item in catalog], item_texts(catalog, settings.item_text_template)
    del catalog
    out = Path(out)
    if in_process:
        encoder = Encoder.from_settings(settings)
        _embed_here(encoder, ids, texts, out, progress)
        fingerprint, dim = encoder.fingerprint, encoder.dim
    else:
        import ray

        start_ray(address, num_cpus=None if address else workers)
        dataset = ray.data.from_items([{"item_id": i, "text": t} for i, t in zip(ids, texts)]).map_batches(
            EmbedBatch, fn_constructor_kwargs={"settings": _portable(settings)}, batch_size=batch_size,
            concurrency=workers, num_cpus=1)
        dataset.write_parquet(str(out))
        fingerprint, dim = Encoder.from_settings(settings).fingerprint, None
    write_text(out / MANIFEST, json.dumps({"version": 1, "fingerprint": fingerprint, "dim": dim, "count": len(ids),
                                           "template": settings.item_text_template}, indent=2))
    return len(ids)


def _embed_here(encoder, ids: list[str], texts: list[str], out: Path, progress: Progress) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shoplm.lm.cache import text_hash

    out.mkdir(parents=True, exist_ok=True)
    done = Counter(progress, "encode items", len(ids))
    for part, start in enumerate(range(0, len(ids), PART_ROWS)):
        chunk_ids, chunk_texts = ids[start:start + PART_ROWS], texts[start:start + PART_ROWS]
        hashes = [text_hash(t) for t in chunk_texts]
        path = out / f"part-{part:05d}.parquet"
        if path.is_file():
            kept = pq.read_table(path, columns=["item_id", "text_hash"])
            if kept.column("item_id").to_pylist() == chunk_ids and kept.column("text_hash").to_pylist() == hashes:
                done(len(chunk_ids))
                continue
        vectors = encoder.encode(chunk_texts, progress=done)  # (b, dim)
        table = pa.table({"item_id": pa.array(chunk_ids, pa.string()),
                          "text_hash": pa.array(hashes, pa.binary(16)),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()),
                                                                      vectors.shape[1])})
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)


def read_embeddings(out: Path) -> Embeddings:
    """What `embed_catalog` wrote under `out` (every Parquet file, in name order)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"{out}: no {MANIFEST}, so not the output of a finished `shoplm jobs embed`")
    manifest = json.loads((out / MANIFEST).read_text())
    table = pq.read_table([str(p) for p in sorted(out.glob("*.parquet"))])
    column = table.column("vector").combine_chunks()
    while isinstance(column, pa.ExtensionArray):  # Ray Data writes its tensor type, over a list of the values
        column = column.storage
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    vectors = flat.astype(np.float32, copy=False).reshape(len(table), -1)
    hashes = np.frombuffer(b"".join(table.column("text_hash").to_pylist()), dtype=np.uint8).reshape(-1, 16)
    if len(table) != manifest["count"]:
        raise ConfigError(f"{out}: {len(table):,} embeddings where {MANIFEST} says {manifest['count']:,}; "
                          "run `shoplm jobs embed` again")
    return Embeddings(table.column("item_id").to_pylist(), hashes, vectors, manifest["fingerprint"])


def adopt_embeddings(out: Path, settings: Settings, model: Path | None = None) -> int:
    """Put what `embed_catalog` wrote under `out` into the embedding cache of `model` (default:
    the configured encoder), so that building the index encodes only the items it lacks;
    refuses vectors of another model. Returns how many vectors were new to the cache."""
    from shoplm.lm.cache import EmbeddingCache
    from shoplm.lm.encoder import Encoder

    embeddings = read_embeddings(out)
    encoder = Encoder.from_settings(settings, model)
    if embeddings.fingerprint.removesuffix("-bf16") != encoder.fingerprint.removesuffix("-bf16"):
        raise ConfigError(f"{out} holds vectors of model {embeddings.fingerprint}, the index is built with "
                          f"{encoder.fingerprint} ({encoder.path}); embed with the same model and settings")
    if embeddings.vectors.shape[1:] != (encoder.dim,):
        raise ConfigError(f"{out} holds vectors of dimension {embeddings.vectors.shape[1:]}, the model gives {encoder.dim}")
    cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
    return cache.adopt(embeddings.hashes, embeddings.vectors)


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
