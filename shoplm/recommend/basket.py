"""Basket completion: given the first k items a shopper put in a basket, rank the rest.

Protocol (`evaluate_baskets`):
- a basket is one session's purchase and cart events (`complements.basket_frame`), its
  items in the order they went in; each user's baskets are ordered by their first event;
- test: each user's last basket; validation: the one before it. Models learn from every
  other basket (for validation, also without the validation basket), never from the
  baskets they are scored on;
- for k in `ks`, every test basket with more than k items is a case: its first k items
  are the cart, the others the targets; the cart's items are removed from every ranking;
  full ranking over the catalog; Recall@10 (share of the targets in the top 10) and
  NDCG@10 (binary gain, ideal from the targets);
- models: popularity (training baskets), item_knn (the baseline of next-item evaluation
  over each user's training events in order, the cart as history), buy_again (the
  user's own training purchases by count, the strong grocery baseline: it knows the
  user, the others do not), and shoplm's complements (`complements.Complements`, what
  `/v1/recommend?items=` and `/v1/items/{id}/bought-together` serve), whose alpha and
  basket decay are chosen on the validation baskets from a small grid.
"""

from __future__ import annotations

import time
from itertools import product
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from shoplm.config import Settings
from shoplm.metrics import ranking_metrics
from shoplm.progress import Counter, Progress, quiet
from shoplm.recommend.baselines.item_knn import ItemKNN
from shoplm.recommend.complements import Complements, basket_frame
from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import Cases, Histories, Sequences, read_catalog
from shoplm.report import Section, write_report

KS = (1, 2, 3)
ALPHAS = (0.5, 0.7, 0.9, 1.0)
BASKET_DECAYS = (0.0, 0.5, 1.0)
METRICS = ("recall@10", "ndcg@10")

Scorer = Callable[[list[np.ndarray], list[str]], np.ndarray]  # (carts, users) -> (B, n) scores


def user_baskets(events: pl.DataFrame, item_ids: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """user -> that user's baskets (item rows in the order they went in), oldest basket first.
    Baskets without a user_id (anonymous sessions) are training data only: keyed by None."""
    rows = {item_id: i for i, item_id in enumerate(item_ids)}
    frame = basket_frame(events)
    users = events.select("session_id", "user_id").drop_nulls("session_id").unique("session_id")
    frame = frame.with_columns(pl.col("basket").str.strip_prefix("s:").alias("session_id")) \
        .join(users, on="session_id", how="left")
    frame = frame.with_columns(pl.col("item_id").replace_strict(rows, return_dtype=pl.Int64).alias("row"))
    grouped = frame.group_by("basket", maintain_order=True).agg(
        pl.col("user_id").first(), pl.col("timestamp").min().alias("start"), pl.col("row"))
    out: dict[str, list[np.ndarray]] = {}
    for user, row in grouped.sort(["user_id", "start", "basket"], nulls_last=True).select("user_id", "row").iter_rows():
        out.setdefault(user, []).append(np.asarray(row, dtype=np.int64))
    return out


class Split:
    """Training baskets and the held-out ones, for one cut (validation or test)."""

    def __init__(self, baskets: dict[str, list[np.ndarray]], held_from_end: int):
        self.train: list[np.ndarray] = []
        self.train_by_user: dict[str, list[np.ndarray]] = {}
        self.held: dict[str, np.ndarray] = {}
        for user, theirs in baskets.items():
            if user is None:  # anonymous baskets are never held out
                self.train += theirs
                continue
            kept = theirs[: max(len(theirs) - held_from_end, 0)]  # what came later is never seen
            if kept:
                self.held[user] = theirs[len(theirs) - held_from_end]
                self.train_by_user[user] = kept
            self.train += kept

    def cases(self, k: int) -> tuple[list[str], list[np.ndarray], list[set[int]]]:
        """(users, carts, targets) of the held-out baskets with more than k distinct items."""
        users, carts, targets = [], [], []
        for user, basket in self.held.items():
            _, first = np.unique(basket, return_index=True)
            ordered = basket[np.sort(first)]  # distinct, in the order they went in
            if len(ordered) > k:
                users.append(user)
                carts.append(ordered[:k])
                targets.append(set(int(t) for t in ordered[k:]))
        return users, carts, targets


def _popularity(split: Split, n: int) -> np.ndarray:
    return np.bincount(np.concatenate(split.train or [np.zeros(0, np.int64)]), minlength=n).astype(np.float64)


def scorers(split: Split, n: int, alpha: float, basket_decay: float,
            vectors: np.ndarray | None = None) -> dict[str, Scorer]:
    """Every model of the evaluation, fitted on `split.train`."""
    popularity = _popularity(split, n)
    tie = 1e-6 * popularity / max(popularity.max(), 1.0)  # (n,) orders what a model leaves at 0

    def popular(carts, users):
        return np.tile(popularity, (len(carts), 1))

    # item_knn reads each user's training baskets as one sequence of events, in order
    sequences = Sequences(list(split.train_by_user), [np.concatenate(b) for b in split.train_by_user.values()],
                          [np.ones(sum(len(x) for x in b), np.float32) for b in split.train_by_user.values()],
                          [np.arange(sum(len(x) for x in b), dtype=np.float64) for b in split.train_by_user.values()])
    knn = ItemKNN()
    empty = Cases([], Histories([], []), np.zeros(0, np.int64))
    knn.fit(FitData(sequences, empty, np.zeros((n, 1), np.float32)))

    def item_knn(carts, users):
        return knn.score(Histories(list(carts), [np.ones(len(c), np.float32) for c in carts]))

    def buy_again(carts, users):
        out = np.tile(tie, (len(carts), 1))
        for i, user in enumerate(users):
            bought = split.train_by_user.get(user, [])
            if bought:
                out[i] += np.bincount(np.concatenate(bought), minlength=n)
        return out

    complements = Complements.fit(split.train, n, alpha, basket_decay)

    def shoplm(carts, users):
        return np.stack([complements.scores(cart, vectors) + tie for cart in carts]) if carts else np.zeros((0, n))

    return {"popularity": popular, "item_knn": item_knn, "buy_again": buy_again, "shoplm_complements": shoplm}


def score_cases(scorer: Scorer, users: list[str], carts: list[np.ndarray], targets: list[set[int]],
                batch: int = 256) -> dict[str, float]:
    """Recall@10 and NDCG@10 of one model over the cases; the cart's items never ranked."""
    ranked, qrels = [], []
    for start in range(0, len(carts), batch):
        scores = np.asarray(scorer(carts[start:start + batch], users[start:start + batch]), dtype=np.float64)
        for i, cart in enumerate(carts[start:start + batch]):
            row = scores[i]
            row[cart] = -np.inf
            top = np.argpartition(-row, 10)[:10]
            top = top[np.lexsort((top, -row[top]))]
            ranked.append([str(t) for t in top])
    qrels = [{str(t): 1.0 for t in tg} for tg in targets]
    metrics = ranking_metrics(ranked, qrels, ks=(10,), mrr_k=None)
    return {"recall@10": metrics["recall@10"], "ndcg@10": metrics["ndcg@10"]}


def tune(baskets: dict[str, list[np.ndarray]], n: int, ks: Sequence[int], vectors: np.ndarray | None,
         progress: Progress = quiet) -> tuple[float, float, dict[str, float]]:
    """(alpha, basket_decay, {"alpha=..,decay=..": validation Recall@10 averaged over ks})."""
    split = Split(baskets, held_from_end=2)
    grid = {}
    step = Counter(progress, "tune complements on validation baskets", len(ALPHAS) * len(BASKET_DECAYS))
    for alpha, decay in product(ALPHAS, BASKET_DECAYS):
        complements = Complements.fit(split.train, n, alpha, decay)
        popularity = _popularity(split, n)
        tie = 1e-6 * popularity / max(popularity.max(), 1.0)

        def scorer(carts, users):
            return np.stack([complements.scores(c, vectors) + tie for c in carts]) if carts else np.zeros((0, n))

        recalls = [score_cases(scorer, *split.cases(k))["recall@10"] for k in ks]
        grid[f"alpha={alpha},decay={decay}"] = float(np.mean(recalls))
        step(1)
    best = max(grid, key=lambda key: (grid[key], key))
    alpha, decay = (float(part.split("=")[1]) for part in best.split(","))
    return alpha, decay, grid


def evaluate_baskets(settings: Settings, items: Path, events: Path, ks: Sequence[int] = KS,
                     vectors: np.ndarray | None = None, tuned: bool = True, progress: Progress = quiet) -> dict:
    """`shoplm eval basket`: the result document (dataset, chosen parameters, per k per model
    metrics). `tuned=False` scores the complements with the served settings
    (complements_alpha, complements_basket_decay) instead of the validation grid's best."""
    started = time.perf_counter()
    catalog = read_catalog(items, events)
    item_ids = catalog.item_ids
    frame = pl.DataFrame([{"timestamp": e.timestamp, "event_type": e.event_type, "user_id": e.user_id,
                           "session_id": e.session_id, "item_id": e.item_id} for e in catalog.events],
                         schema={"timestamp": pl.Float64, "event_type": pl.String, "user_id": pl.String,
                                 "session_id": pl.String, "item_id": pl.String})
    baskets = user_baskets(frame, item_ids)
    n = len(item_ids)
    if tuned:
        alpha, decay, grid = tune(baskets, n, ks, vectors, progress)
    else:
        alpha, decay, grid = settings.complements_alpha, settings.complements_basket_decay, {}
    split = Split(baskets, held_from_end=1)
    models = scorers(split, n, alpha, decay, vectors)
    by_k: dict[str, dict[str, dict[str, float]]] = {}
    counts = {}
    step = Counter(progress, "score test baskets", len(ks) * len(models))
    for k in ks:
        users, carts, targets = split.cases(k)
        counts[str(k)] = len(carts)
        by_k[str(k)] = {}
        for name, scorer in models.items():
            by_k[str(k)][name] = score_cases(scorer, users, carts, targets)
            step(1)
    return {
        "dataset": {"name": Path(items).resolve().parent.name, "items": n, "users": len(split.held),
                    "train_baskets": len(split.train), "cases": counts,
                    "protocol": "each user's last basket held out; the first k items are the cart, the rest the "
                                "targets; full ranking without the cart's items",
                    "seconds": round(time.perf_counter() - started, 1)},
        "complements": {"alpha": alpha, "basket_decay": decay, "chosen_on": "validation baskets" if tuned else "settings",
                        "validation_recall@10": grid, "text_stand_ins": vectors is not None},
        "k": by_k,
    }


def write_basket_report(out_dir: Path, result: dict) -> Path:
    """report.md with a table per k and a chart of Recall@10 and NDCG@10 by k."""
    ks = list(result["k"])
    models = list(result["k"][ks[0]])
    sections = []
    for metric in METRICS:
        rows = {model: {f"k={k} (n={result['dataset']['cases'][k]})": result["k"][k][model][metric] for k in ks}
                for model in models}
        sections.append(Section(f"{metric} by cart size", rows, chart=f"basket_{metric.replace('@', '')}.png"))
    chosen = result["complements"]
    if chosen["validation_recall@10"]:
        sections.append(Section("complements on the validation baskets (Recall@10, mean over k)",
                                {key: {"recall@10": v} for key, v in chosen["validation_recall@10"].items()},
                                note=f"chosen: alpha={chosen['alpha']}, basket_decay={chosen['basket_decay']}"))
    preamble = (f"{result['dataset']['protocol']}. {result['dataset']['users']:,} users, "
                f"{result['dataset']['items']:,} items, {result['dataset']['train_baskets']:,} training baskets.")
    return write_report(out_dir, f"Basket completion on {result['dataset']['name']}", sections, preamble)
