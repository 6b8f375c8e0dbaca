"""Offline evaluation of next-item recommendation: every baseline and the shoplm model in
one run, on one split, with the same metric code.

Protocol (`evaluate_recommenders`):
- leave-last-out per actor by time, ties in input order (`shoplm.recommend.sequences.leave_last_out`);
- full ranking over all catalog items; by default items already in the history stay in
  the ranking (the RecBole protocol of the published Amazon tables), `exclude_history`
  removes them;
- Recall@10, NDCG@10, Recall@50, NDCG@50 and MRR of the single test target
  (`shoplm.metrics.single_target_metrics`), overall and by slice: the test history's
  length {1, 2-3, 4-7, 8+}, the target's number of training events {0, 1-4, 5+}, and with
  `cold_items` > 0 the cases whose target is a cold (new) item.
Models are trained on training events only; SASRec and the shoplm model stop early on the
validation target. The test target is used for nothing but these numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from shoplm.config import Settings
from shoplm.errors import RecommendModelError
from shoplm.metrics import single_target_metrics, target_ranks
from shoplm.recommend.recommender import FitData, Recommender
from shoplm.data.aggregates import LENGTH_BUCKETS, history_bucket
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import Encoder
from shoplm.progress import Progress, quiet
from shoplm.recommend.checkpoint import check_same_catalog, load_model
from shoplm.recommend.train import TrainedUserModel, model_config, serving_blend, train_config
from shoplm.recommend.blend import Blend, popularity_prior, row_zscore, zscore
from shoplm.recommend.sequences import Histories, Sequences
from shoplm.recommend.baselines.item_knn import ItemKNN
from shoplm.recommend.baselines.popularity import Popularity
from shoplm.recommend.baselines.sasrec import sasrec
from shoplm.recommend.baselines.text_zero_shot import TextZeroShot
from shoplm.report import Section, write_report
from shoplm.recommend.sequences import COLD_USER_KS, Cases, Catalog, ColdUsers, Split, apply_cold_items, build_sequences, \
    cold_items, hold_out_users, item_frequency, leave_last_out, prefix_cases, read_catalog, training_fingerprint
from shoplm.data.text import item_texts

METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr")
FREQUENCY_BUCKETS = (("0", 0, 0), ("1-4", 1, 4), ("5+", 5, None))
NOT_RANKED = np.iinfo(np.int64).max // 2  # rank of a target removed from the ranking: metrics ~0


class Prepared(NamedTuple):
    item_ids: list[str]
    split: Split  # of the users that train
    cold: np.ndarray  # bool[n]: the cold items
    vectors: np.ndarray  # float32 (n, dim) item text vectors
    cold_users: ColdUsers | None  # users held out of training entirely (--cold-users)


def prepare(settings: Settings, items: Path, events: Path, cold_fraction: float = 0.0,
            progress: Progress = quiet, cold_users: float = 0.0) -> Prepared:
    """The files as the recommenders read them: the leave-last-out split of every actor not
    held out by `cold_users` (`sequences.hold_out_users`), with `cold_fraction` of the items cold."""
    return prepare_catalog(settings, read_catalog(items, events), cold_fraction, progress, cold_users)


def prepare_catalog(settings: Settings, catalog: Catalog, cold_fraction: float = 0.0, progress: Progress = quiet,
                    cold_users: float = 0.0) -> Prepared:
    """`prepare` of items and events already read (from files, or a store: `shoplm jobs retrain`)."""
    item_ids = catalog.item_ids
    seqs = build_sequences(catalog.events, item_ids, settings.event_weights, settings.recommend_sequences_by)
    held = None
    if cold_users > 0:
        seqs, held = hold_out_users(seqs, cold_users, settings.cold_users_seed)
    split = leave_last_out(seqs)
    cold = cold_items(len(item_ids), cold_fraction, settings.cold_items_seed)
    if cold.any():
        split = apply_cold_items(split, cold)
    vectors = item_vectors(settings, item_texts(catalog.items, settings.item_text_template), progress)
    return Prepared(item_ids, split, cold, vectors, held)


def item_vectors(settings: Settings, texts: list[str], progress: Progress = quiet) -> np.ndarray:
    """float32 (n, dim) L2-normalised text embeddings, encoded once and cached on disk."""

    progress("encode item texts", 0, 1)
    encoder = Encoder.from_settings(settings)
    cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
    vectors = cache.encode(encoder, texts)
    progress("encode item texts", 1, 1)
    return vectors


def baselines(settings: Settings, progress: Progress = quiet) -> list[Recommender]:
    sas = sasrec(settings, settings.device)
    sas.progress = progress
    return [
        Popularity(settings.popularity_half_life_days),
        ItemKNN(settings.knn_window, settings.text_recency_decay),
        sas,
        TextZeroShot(settings.text_recency_decay),
    ]


def case_ranks(model: Recommender, cases: Cases, exclude_history: bool, batch: int = 1024,
               progress: Progress = quiet) -> np.ndarray:
    """int64[n_cases]: 1-based rank of each target among all items (ties count against it)."""
    ranks = []
    for start in range(0, len(cases), batch):
        histories = cases.histories.slice(start, start + batch)
        scores = np.array(model.score(histories), dtype=np.float32)  # (b, n)
        if exclude_history:
            for row, items in enumerate(histories.items):
                scores[row, items] = -np.inf
        targets = cases.targets[start:start + batch]  # (b,)
        batch_ranks = target_ranks(scores, targets)  # (b,)
        if exclude_history:  # a removed target is not ranked at all, not ranked last
            batch_ranks[np.isneginf(scores[np.arange(len(targets)), targets])] = NOT_RANKED
        ranks.append(batch_ranks)
        progress(f"score {model.name}", min(start + batch, len(cases)), len(cases))
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def evaluate_recommenders(models: list[Recommender], split: Split, item_text: np.ndarray, cold: np.ndarray,
                          exclude_history: bool = False, fitted: frozenset[str] = frozenset(),
                          progress: Progress = quiet) -> tuple[dict, dict, dict]:
    """Fits each model (except those named in `fitted`) and ranks the test cases.
    Returns (models -> metrics, slices -> bucket -> model -> metrics, info)."""
    data = FitData(split.train, split.valid, item_text)
    test = split.test
    frequency = item_frequency(split.train, len(item_text))[test.targets]  # (n_cases,)
    history_len = np.array([len(h) for h in test.histories.items])  # (n_cases,)
    slices = {
        "history_len": {name: _between(history_len, lo, hi) for name, lo, hi in LENGTH_BUCKETS},
        "target_freq": {name: _between(frequency, lo, hi) for name, lo, hi in FREQUENCY_BUCKETS},
    }
    if cold.any():
        slices["cold_items"] = {"cold": cold[test.targets], "warm": ~cold[test.targets]}
    overall, by_slice, seconds = {}, {k: {b: {} for b in v} for k, v in slices.items()}, {}
    for model in models:
        started = time.perf_counter()
        if model.name not in fitted:
            progress(f"fit {model.name}", 0, 1)
            model.fit(data)
        per_case = single_target_metrics(case_ranks(model, test, exclude_history, progress=progress))
        seconds[model.name] = round(time.perf_counter() - started, 1)
        overall[model.name] = _means(per_case, np.ones(len(test), dtype=bool))
        for kind, buckets in slices.items():
            for bucket, mask in buckets.items():
                if mask.any():
                    by_slice[kind][bucket][model.name] = _means(per_case, mask)
    by_slice = {kind: {b: m for b, m in buckets.items() if m} for kind, buckets in by_slice.items()}
    counts = {kind: {b: int(mask.sum()) for b, mask in buckets.items()} for kind, buckets in slices.items()}
    return overall, by_slice, {"slice_counts": counts, "seconds": seconds}


class ServedMix:
    """A trained recommender as the engine serves it (`Engine._scores`): z(model) +
    w[history bucket] * z(log(1 + popularity)), popularity alone for an empty history."""

    def __init__(self, name: str, model: Recommender, blend: Blend, popularity: np.ndarray):
        self.name, self.model, self.blend = name, model, blend
        self.prior = zscore(popularity_prior(popularity)).astype(np.float32)  # (n,)

    def fit(self, data: FitData) -> None:
        """Nothing to learn: the model is fitted already."""

    def score(self, histories: Histories) -> np.ndarray:
        out = row_zscore(np.asarray(self.model.score(histories), dtype=np.float64))  # (B, n)
        for row, items in enumerate(histories.items):
            out[row] = self.prior if not len(items) else \
                out[row] + self.blend.popularity.get(history_bucket(len(items)), 0.0) * self.prior
        return out.astype(np.float32)


def cold_user_slices(models: list[Recommender], users: Sequences, exclude_history: bool,
                     progress: Progress = quiet) -> tuple[dict, dict]:
    """Per k in COLD_USER_KS: each held-out user's first k events are the history and event
    k + 1 the target, scored by every model (full ranking). Returns ({k: {model: metrics}},
    {k: cases})."""
    out, counts = {}, {}
    for k in COLD_USER_KS:
        cases = prefix_cases(users, (k,))
        counts[str(k)] = len(cases)
        if not len(cases):
            continue
        out[str(k)] = {model.name: _means(single_target_metrics(case_ranks(model, cases, exclude_history,
                                                                           progress=progress)),
                                          np.ones(len(cases), dtype=bool)) for model in models}
    return out, counts


def _between(values: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    return (values >= lo) & (values <= (hi if hi is not None else np.iinfo(np.int64).max))


def _means(per_case: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    return {name: round(float(per_case[name][mask].mean()), 6) for name in METRICS}


def check_model_fits(params: dict, item_ids: list[str], model_items: list[str], fingerprint: str,
                     cold_fraction: float, directory: Path, cold_users: float = 0.0) -> None:
    """A saved model must come from this catalog, these training events and this cold split."""
    check_same_catalog(model_items, item_ids, directory)
    if float(params.get("cold_users", 0.0)) != float(cold_users):
        raise RecommendModelError(
            f"{directory} was trained with --cold-users {params.get('cold_users', 0.0)}, this evaluation uses "
            f"{cold_users}; train with `shoplm train recommend --cold-users {cold_users}`, or drop --model "
            "to train the shoplm model in this run"
        )
    if float(params.get("cold_items", 0.0)) != float(cold_fraction):
        raise RecommendModelError(
            f"{directory} was trained with --cold-items {params.get('cold_items', 0.0)}, this evaluation uses "
            f"{cold_fraction}; train with `shoplm train recommend --cold-items {cold_fraction}`, or drop --model "
            "to train the shoplm model in this run"
        )
    if params.get("training_fingerprint") != fingerprint:
        raise RecommendModelError(
            f"{directory} was trained on other events (or another SHOPLM_COLD_ITEMS_SEED / event weights) than "
            "these; its training data could contain test targets. Retrain on these files or drop --model"
        )


def write_recommend_report(out_dir: Path, result: dict) -> Path:
    """Markdown tables + a PNG per slice kind (metric NDCG@10 and Recall@10 by bucket)."""
    sections = [Section("Overall", result["models"], chart="overall.png",
                        note=f"{result['dataset']['test_cases']:,} test cases; full ranking over "
                             f"{result['dataset']['items']:,} items")]
    for kind, buckets in result["slices"].items():
        counts = result["dataset"]["slice_counts"][kind]
        for metric in ("ndcg@10", "recall@10"):
            rows = {model: {f"{b} (n={counts[b]})": buckets[b][model][metric] for b in buckets}
                    for model in result["models"]}
            sections.append(Section(f"{metric} by {kind}", rows, chart=f"{kind}_{metric.replace('@', '')}.png"))
        for bucket, models in buckets.items():
            sections.append(Section(f"{kind} = {bucket} (n={counts[bucket]})", models))
    protocol = result["dataset"]["protocol"]
    preamble = (f"Leave-last-out by time; history items {'removed' if protocol['exclude_history'] else 'kept'}; "
                f"cold items: {protocol['cold_items']}.")
    return write_report(out_dir, f"Recommendation on {result['dataset']['name']}", sections, preamble)


def evaluate_files(settings: Settings, items: Path, events: Path, model_dir: Path | None = None, cold: float = 0.0,
                   exclude_history: bool = False, progress: Progress = quiet, cold_users: float = 0.0) -> dict:
    """`shoplm eval recommend`: every baseline and the shoplm model (loaded from `model_dir`, or
    trained here) on the leave-last-out split of the files; the result document the CLI writes
    as JSON: {"dataset": {...protocol, seconds}, "models": {name: metrics}, "slices": {...}}.
    `cold_users` adds the slice "cold_users" (`cold_user_slices`)."""
    started = time.perf_counter()
    item_ids, split, cold_mask, vectors, held = prepare(settings, items, events, cold, progress, cold_users)
    models = baselines(settings, progress)
    fitted = frozenset()
    if model_dir is not None:
        model, model_items, params = load_model(model_dir, settings.device)
        check_model_fits(params, item_ids, model_items, training_fingerprint(item_ids, split), cold, model_dir,
                         cold_users)
        shoplm = TrainedUserModel("shoplm", lambda n, d: model.cfg, train_config(settings), settings.device)
        shoplm.model = model
        fitted = frozenset({"shoplm"})
    else:
        shoplm = TrainedUserModel(
            "shoplm", lambda n, d: model_config(settings, n, d), train_config(settings),
            settings.device, progress=progress)
    models.append(shoplm)
    overall, slices, info = evaluate_recommenders(models, split, vectors, cold_mask, exclude_history, fitted,
                                                  progress)
    if held is not None:
        # Popularity and the co-occurrence lists count every event of the other users, as a
        # service's store holds them when the held-out users arrive (cooc_counts: the plain
        # co-occurrence list); the trained models keep the training events they learned from.
        popularity = Popularity(settings.popularity_half_life_days)
        counting = [popularity, ItemKNN(settings.knn_window, settings.text_recency_decay),
                    ItemKNN(settings.knn_window, settings.text_recency_decay, normalise=False)]
        for model in counting:
            model.fit(FitData(held.rest, split.valid, vectors))
        trained = next(m for m in models if isinstance(m, Popularity)).popularity
        blend = Blend.load(model_dir) if model_dir is not None else serving_blend(shoplm.score, split, trained, held)
        served = ServedMix("shoplm_served", shoplm, blend, popularity.popularity)
        others = [m for m in models if not isinstance(m, (Popularity, ItemKNN))]
        slices["cold_users"], info["slice_counts"]["cold_users"] = cold_user_slices(
            [*counting, *others, served], held.test, exclude_history, progress)
        info["cold_users"] = {"share": cold_users, "seed": settings.cold_users_seed, "test_users": len(held.test),
                              "valid_users": len(held.valid), "blend": blend.popularity, "blend_tuned_on": blend.tuned_on}
    n_events = sum(len(s) for s in split.train.items)
    result = {
        "dataset": {
            "name": Path(items).resolve().parent.name, "items_file": str(items), "events_file": str(events),
            "items": len(item_ids), "actors": len(split.train), "train_events": n_events,
            "test_cases": len(split.test), "valid_cases": len(split.valid),
            "protocol": {"split": "leave-last-out by time", "ranking": "full", "exclude_history": exclude_history,
                         "cold_users": cold_users, "cold_items": cold, "cold_items_seed": settings.cold_items_seed,
                         "cold_item_count": int(cold_mask.sum())},
            "shoplm_model": str(model_dir) if model_dir else "trained in this run",
            **info, "seconds": {**info["seconds"], "total": round(time.perf_counter() - started, 1)},
        },
        "models": overall,
        "slices": slices,
    }
    return result
