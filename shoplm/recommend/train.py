"""Training the sequence models (the shoplm model and SASRec): one short loop.

Every position of every training sequence predicts the next item (all prefixes at once,
as in SASRec) with a full softmax over the catalog, the loss of a position weighted by its
target event's type weight. After each epoch the model scores the validation targets;
the best epoch by validation NDCG@10 is kept and training stops after `patience` epochs
without improvement. The test target is never seen here.

A trained model is saved as `model.safetensors` + `item_ids.npy` + `params.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from shoplm.config import Settings
from shoplm.device import pick_device
from shoplm.errors import RecommendModelError
from shoplm.metrics import single_target_metrics, target_ranks
from shoplm.recommend.baselines.popularity import Popularity
from shoplm.recommend.blend import Blend, tune_recommend_blend
from shoplm.recommend.checkpoint import save_model
from shoplm.recommend.cooccurrence import co_occurrence, csr_tensors
from shoplm.recommend.recommender import FitData
from shoplm.progress import Progress, quiet
from shoplm.replica import IN_PROCESS, Replica
from shoplm.recommend.sequences import Cases, ColdUsers, Histories, Sequences, Split, item_frequency, prefix_cases, \
    training_fingerprint
from shoplm.recommend.model import UserModel, UserModelConfig, model_scores, pad_left


@dataclass
class TrainConfig:
    """Training of one sequence model; the defaults are the `Settings` defaults (`train_config`)."""

    epochs: int = 40
    patience: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    id_dropout: float = 0.0  # share of items whose ID is hidden per step: the floor, for frequent items
    id_dropout_rare: float = 1.0  # extra share for rare ones: + rare * half / (half + training events)
    id_dropout_half: float = 20.0  # training events at which the extra share is halved
    id_dropout_scoring: float = 0.75  # share of its dropout chance by which scoring lowers an item's ID weight
    new_item_exposure: float = 1.0  # new items' share of the top 10 / their catalog share, see calibrate_new_items
    seed: int = 0
    eval_batch: int = 1024
    max_minutes: float = 12.0  # no new epoch starts after this; keeps `train recommend` under 15 minutes


def train_config(settings: Settings, **overrides) -> TrainConfig:
    config = TrainConfig(
        epochs=settings.recommend_epochs, patience=settings.recommend_patience,
        batch_size=settings.recommend_batch_size, lr=settings.recommend_lr,
        weight_decay=settings.recommend_weight_decay, label_smoothing=settings.recommend_label_smoothing,
        id_dropout=settings.recommend_id_dropout, id_dropout_rare=settings.recommend_id_dropout_rare,
        id_dropout_half=settings.recommend_id_dropout_half, id_dropout_scoring=settings.recommend_id_dropout_scoring,
        seed=settings.recommend_seed,
        new_item_exposure=settings.recommend_new_item_exposure,
        max_minutes=settings.recommend_max_minutes,
    )
    return replace(config, **overrides)


def model_config(settings: Settings, n_items: int, text_dim: int) -> UserModelConfig:
    """The shoplm model's config from the settings."""
    return UserModelConfig(
        n_items=n_items, text_dim=text_dim, use_text=True, use_id=settings.recommend_use_id,
        encoder=settings.recommend_encoder, dim=settings.recommend_dim, n_layers=settings.recommend_layers,
        n_heads=settings.recommend_heads, n_experts=settings.recommend_experts, max_len=settings.recommend_max_len, dropout=settings.recommend_dropout,
        temperature=settings.recommend_temperature, text_lags=settings.recommend_text_lags,
        cooc_path=settings.recommend_cooc_path, cooc_window=settings.knn_window,
        new_item_neighbours=settings.recommend_new_item_neighbours,
    )


def training_windows(train: Sequences, max_len: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per actor, windows of at most max_len + 1 events (the newest first), each giving
    max_len (input, next item) pairs; a long sequence yields several windows. Also returns
    the actor row of each window (int64[n_windows])."""
    items_out, weights_out, owners = [], [], []
    for row, (items, weights) in enumerate(zip(train.items, train.weights)):
        for end in range(len(items), 1, -max_len):
            start = max(0, end - max_len - 1)
            items_out.append(items[start:end])
            weights_out.append(weights[start:end])
            owners.append(row)
    return items_out, weights_out, np.array(owners, dtype=np.int64)


def cross_fitted_cooccurrence(model: UserModel, train: Sequences, folds: np.ndarray, device: str) -> list:
    """For each fold f, C from the actors outside f as CSR arrays (indptr, indices, values)
    on `device` (None without the path)."""
    if not model.cfg.cooc_path:
        return [None, None]
    out = []
    for fold in (0, 1):
        keep = [np.ones(len(s), dtype=bool) if folds[i] != fold else np.zeros(len(s), dtype=bool)
                for i, s in enumerate(train.items)]
        out.append(csr_tensors(co_occurrence(train.select(keep), model.cfg.n_items, model.cfg.cooc_window), device))
    return out


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of windows of similar length, in random order: most sequences are short, so
    padding every batch to the longest window in the data would waste most of the compute."""
    order = rng.permutation(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]  # by length, random within a length
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def fold_batches(lengths: np.ndarray, window_folds: np.ndarray, batch_size: int,
                 rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(fold, window rows) batches: each batch from one cross-fitting fold, in random order."""
    batches = []
    for fold in (0, 1):
        rows = np.flatnonzero(window_folds == fold)
        batches += [(fold, rows[b]) for b in length_batches(lengths[rows], batch_size, rng)]
    return [batches[i] for i in rng.permutation(len(batches))]


class TrainingSet(NamedTuple):
    """What every training step reads, built once by `training_set`."""

    windows: list[np.ndarray]  # int64[<= max_len + 1] each, see training_windows
    weights: list[np.ndarray]  # float32, the windows' event weights
    lengths: np.ndarray  # int64[n_windows]
    folds: np.ndarray  # int64[n_windows]: the cross-fitting fold of each window's actor
    mean_weight: float  # of all training events: the loss is a weighted mean with this scale
    cooc: list  # per fold: C as CSR arrays (indptr, indices, values), or None without the co-occurrence path
    unseen: torch.Tensor  # bool (n,): items without training events
    id_drop: torch.Tensor  # float (n + 1,): each item's chance that its ID is hidden in a step, see id_drop_rates
    id_rng: torch.Generator | None  # RNG of the ID-dropout draws (None: the global one)


def training_set(model: UserModel, train: Sequences, cfg: TrainConfig, device: str,
                 id_rng: torch.Generator | None = None) -> TrainingSet | None:
    """The training windows with their folds and co-occurrence; None without any window."""
    windows, weights, owners = training_windows(train, model.cfg.max_len)
    if not windows:
        return None
    folds = np.random.default_rng(cfg.seed + 1).integers(0, 2, len(train))  # (n_actors,) for cross-fitting
    # per fold C; ID-hidden items borrow their text neighbours' share of it, as new ones do (UserModel.logits)
    cooc = cross_fitted_cooccurrence(model, train, folds, device)
    model.text_neighbours()  # found once, before a data-parallel wrap sees the model's buffers
    id_drop = F.pad(id_drop_rates(item_frequency(train, model.cfg.n_items), cfg), (0, 1)).to(device)  # (n + 1,)
    return TrainingSet(windows, weights, np.array([len(w) for w in windows]), folds[owners],
                       float(np.concatenate(weights).mean()), cooc, model.seen[:-1] == 0, id_drop, id_rng)


def id_drop_rates(counts: np.ndarray, cfg: TrainConfig) -> torch.Tensor:
    """float32 (n,): the chance that an item's ID vector (with its popularity and co-occurrence)
    is hidden in a training step, from its training events `counts` (n,):
    id_dropout + id_dropout_rare * half / (half + count), at most 1.

    A rare item's ID vector is learnt from a handful of events and is mostly noise, yet with
    one dropout rate for all the model leaned on it as much as on a frequent item's. Hiding it
    more often makes the model rank rare items on their text, which generalises, and keeps
    the ID where there is evidence behind it: the frequency-aware form of DropoutNet's input
    dropout (Volkovs et al., NeurIPS 2017). On Amazon Scientific (0, 1, 5: chance 5 / (5 + n))
    took validation NDCG@10 from 0.0860 to 0.0872 against a flat 0.2, test Recall@10 from 0.1318
    to 0.1360, most of it on targets with 1-4 training events. With scoring at the expected ID
    weight (`UserModel.set_id_weight`) a larger half helps too: over eight seeds, validation
    NDCG@10 0.0878, 0.0889 and 0.0900 for half 5, 10 and 20, hence the default 20
    (docs/experiments/2026-11-29-frequency-aware-id-dropout.md, 2026-11-29-id-dropout-scoring.md)."""
    counts = torch.from_numpy(np.asarray(counts, dtype=np.float32))
    half = max(cfg.id_dropout_half, 1e-9)
    return (cfg.id_dropout + cfg.id_dropout_rare * half / (half + counts)).clamp(0.0, 1.0)


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, data: TrainingSet, fold: int,
               batch: np.ndarray, cfg: TrainConfig, replica: Replica = IN_PROCESS) -> float:
    """One optimiser step on the windows `batch` (rows of `data`, one fold); returns the loss.
    `net` is the model, or its DDP wrapper: it is called (`forward` = `UserModel.logits`) so
    that DDP's gradient hooks fire. A replica trains on its rows of the batch, its loss
    scaled by world / (positions of the whole batch), so that DDP's mean of the replicas'
    gradients is the gradient of the whole batch's loss, as in-process."""
    model = net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net
    device = data.unseen.device
    positions = int((data.lengths[batch] - 1).sum())  # (input, next item) pairs in the whole batch
    mine, share = replica.shard(batch), replica.world
    if len(mine) == 0:  # fewer windows than replicas: every replica must still step, so one
        mine, share = batch[:1], 0  # steps on a copy of a window with weight 0
    seq = pad_left([data.windows[i] for i in mine], model.cfg.max_len + 1, model.pad).to(device)  # (B, L + 1)
    w = pad_left([data.weights[i] for i in mine], model.cfg.max_len + 1, 0).to(device).float()  # (B, L + 1)
    history, target, w = seq[:, :-1], seq[:, 1:], w[:, 1:]  # (B, L) each
    rows, cols = torch.nonzero((target != model.pad) & (history != model.pad), as_tuple=True)  # (P,) each
    id_keep = (torch.rand(model.pad + 1, device=device, generator=data.id_rng) >= data.id_drop).float()  # (n + 1,)
    logits = net(history, rows, cols, id_keep, data.cooc[fold])  # (P, n)
    # Items without training events are left out of the softmax: as never-bought
    # negatives they would teach the model that a new item is never the answer.
    logits = logits.masked_fill(data.unseen, -1e4)  # -1e4, not -inf: label smoothing sums all logits
    loss = F.cross_entropy(logits, target[rows, cols], reduction="none", label_smoothing=cfg.label_smoothing)
    loss = (loss * w[rows, cols]).sum() * share / (data.mean_weight * positions)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return loss.item()


def fit_user_model(model: UserModel, train: Sequences, valid: Cases, cfg: TrainConfig, device: str,
                   progress: Progress = quiet, replica: Replica = IN_PROCESS, what: str = "train shoplm") -> list[dict]:
    """Train `model` in place; returns one log row per epoch. Keeps the best validation epoch;
    `progress(what, epoch, epochs, log row)` after each.
    As one `replica` of a data-parallel group, each worker runs this same loop on the same
    data and seed, so on the same batches, and trains on its share of each (`train_step`);
    the validation metrics, the stop decisions and so the weights are the same on every worker."""
    torch.manual_seed(cfg.seed + replica.rank)  # dropout differs per replica; rank 0 draws as in-process
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    data = training_set(model, train, cfg, device, replica.shared_generator(cfg.seed + 3, device))
    if data is None:
        return []
    model.set_id_weight(data.id_drop, cfg.id_dropout_scoring)  # before validation picks the epoch
    net = replica.wrap(model)
    # fused: one kernel for all parameters; the per-tensor loop cost ~15% of a CPU epoch.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    best, best_state, log, waited = -1.0, None, [], 0
    deadline = time.perf_counter() + 60 * cfg.max_minutes
    stopped = "epochs"  # all planned epochs ran; else "patience" (early stopping) or "cap" (max_minutes)
    for epoch in range(1, cfg.epochs + 1):
        if replica.any(time.perf_counter() > deadline):
            stopped = "cap"
            break
        net.train()
        started, total, steps = time.perf_counter(), 0.0, 0
        for fold, batch in fold_batches(data.lengths, data.folds, cfg.batch_size, rng):
            total, steps = total + train_step(net, optimizer, data, fold, batch, cfg, replica), steps + 1
        valid_metrics = validate(model, valid, cfg, device, replica)
        ndcg = valid_metrics["ndcg@10"]
        log.append({"epoch": epoch, "loss": replica.all_sum([total])[0].item() / (replica.world * steps),
                    "valid_ndcg@10": ndcg, "valid_recall@10": valid_metrics.get("recall@10", 0.0),
                    "seconds": time.perf_counter() - started})
        progress(what, epoch, cfg.epochs, log[-1])
        if ndcg > best:
            best, waited = ndcg, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience:
                stopped = "patience" if epoch < cfg.epochs else "epochs"
                break
    if log:
        log[-1]["stopped"] = stopped
    if best_state is not None:
        model.load_state_dict(best_state)
    if model.cfg.use_text and cfg.new_item_exposure > 0:
        shift = calibrate_new_items(model, valid.histories, cfg, device)
        if log:
            log[-1]["new_item_shift"] = shift
    return log


def validate(model: UserModel, valid: Cases, cfg: TrainConfig, device: str,
             replica: Replica = IN_PROCESS) -> dict[str, float]:
    """NDCG@10 and Recall@10 (and, in-process, every metric of `evaluate`) over all the
    validation cases; in a group each replica scores its share and the sums are pooled."""
    if replica.world == 1:
        return evaluate(model, valid.histories, valid.targets, cfg.eval_batch, device)
    mine = np.zeros(len(valid), dtype=bool)
    mine[replica.shard(np.arange(len(valid)))] = True
    cases = valid.subset(mine)
    metrics = evaluate(model, cases.histories, cases.targets, cfg.eval_batch, device)
    names = ("ndcg@10", "recall@10")
    sums = replica.all_sum([metrics.get(name, 0.0) * len(cases) for name in names] + [len(cases)])
    return {name: float(total / max(sums[-1], 1.0)) for name, total in zip(names, sums)}


def new_item_share(scores: torch.Tensor, new: torch.Tensor, shift: float, k: int = 10) -> float:
    """Share of the top-k slots of `scores` (B, n) that the items where `new` (n,) is True
    take once their scores are raised by `shift`."""
    top = torch.topk(scores + shift * new.float(), min(k, scores.shape[1]), dim=1).indices  # (B, k)
    return float(new[top].float().mean())


def calibrate_new_items(model: UserModel, histories: Histories, cfg: TrainConfig, device: str,
                        k: int = 10, max_cells: int = 50_000_000) -> float:
    """Shifts the offset of the items without training events (`new_item_shift`) so that,
    over the validation histories, they take `new_item_exposure` times their catalog share
    of the top-k slots; returns the shift. No target is read: the rule is a prior, that a
    new item is shown as often as an average item until its own events come in.

    Why not fit the offset on outcomes: the training data cannot say how often new items are
    bought, and the proxies mislead. Fitting NDCG@10 on validation with pseudo-new items (warm
    items with their ID hidden) picks anything from -0.5 to +0.1 between runs: those items
    were training targets, so the model knew them, and they look less in need of a lift than
    new items are. On Amazon Scientific with 10% cold items, the share rule
    took cold-target test NDCG@10 from 0.023 to 0.051 (zero-shot text 0.049) and overall
    NDCG@10 from 0.0794 to 0.0804, the best of the offsets tried
    (docs/experiments/2026-11-28-recommend-new-items.md).
    At most `max_cells` (history, item) scores are held at once: on a big catalog, a
    seeded sample of the histories."""
    new = (model.seen[:-1] == 0).cpu()  # (n,)
    if len(histories) == 0 or not new.any() or bool(new.all()):
        return 0.0
    n_new, top = int(new.sum()), min(k, model.cfg.n_items)
    target = min(cfg.new_item_exposure * n_new / model.cfg.n_items, n_new / top, 1.0)  # at most a full top k
    rows = max(1, min(len(histories), max_cells // model.cfg.n_items))
    pick = np.sort(np.random.default_rng(cfg.seed + 2).permutation(len(histories))[:rows])
    sample = Histories([histories.items[i] for i in pick], [histories.weights[i] for i in pick])
    scores = torch.from_numpy(model_scores(model, sample, cfg.eval_batch, device))  # (rows, n)
    # The share rises with the shift: widen a bracket around the target, then bisect.
    lo, hi = -1.0, 1.0
    while new_item_share(scores, new, lo, k) > target and lo > -1e4:
        lo *= 2
    while new_item_share(scores, new, hi, k) < target and hi < 1e4:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if new_item_share(scores, new, mid, k) < target else (lo, mid)
    shift = hi  # the least shift found that reaches the target
    with torch.no_grad():
        model.new_item_shift += shift
    return shift


def evaluate(model: UserModel, histories: Histories, targets: np.ndarray, batch: int, device: str) -> dict[str, float]:
    """Mean Recall/NDCG@10/50 and MRR of the targets under full ranking (history not removed)."""
    if len(targets) == 0:
        return {"ndcg@10": 0.0}
    ranks = np.concatenate([
        target_ranks(model_scores(model, histories.slice(s, s + batch), batch, device), targets[s:s + batch])
        for s in range(0, len(targets), batch)
    ])
    return {name: float(values.mean()) for name, values in single_target_metrics(ranks).items()}


class TrainedUserModel:
    """A `UserModel` behind the Recommender protocol: `fit` trains it, `score` runs it.
    `replica`: this process's place in data-parallel training (`shoplm.replica`)."""

    def __init__(self, name: str, make_config: Callable[[int, int], UserModelConfig], train_cfg: TrainConfig,
                 device: str | None = None, progress: Progress = quiet, replica: Replica = IN_PROCESS):
        self.name = name
        self.replica = replica
        self.make_config = make_config
        self.train_cfg = train_cfg
        self.device = pick_device(device)
        self.progress = progress
        self.model: UserModel | None = None
        self.log: list[dict] = []

    def fit(self, data: FitData) -> None:
        torch.manual_seed(self.train_cfg.seed)
        seen = torch.from_numpy(item_frequency(data.train, data.n_items) > 0)  # (n,)
        config = self.make_config(data.n_items, data.item_text.shape[1])
        self.model = UserModel(config, torch.from_numpy(data.item_text), seen)
        if config.cooc_path:
            self.model.set_cooccurrence(co_occurrence(data.train, data.n_items, config.cooc_window))
        self.log = fit_user_model(self.model, data.train, data.valid, self.train_cfg, self.device, self.progress,
                                  self.replica, f"train {self.name}")

    def score(self, histories: Histories) -> np.ndarray:
        if self.model is None:
            raise RecommendModelError(f"{self.name} was not trained; call fit() or load a model directory")
        return model_scores(self.model, histories, self.train_cfg.eval_batch, self.device)


def train_and_save(settings: Settings, item_ids: list[str], split: Split, vectors: np.ndarray, cold: float,
                   out: Path, progress: Progress = quiet, replica: Replica = IN_PROCESS,
                   seconds_before: float = 0.0, cold_users: ColdUsers | None = None,
                   cold_users_share: float = 0.0) -> list[dict]:
    """`shoplm train recommend` once the files are read (`shoplm.recommend.evaluate.prepare`): trains the
    shoplm model, tunes the engine's popularity blend on validation and saves both to `out`
    with the training log; returns the log. In a data-parallel group every replica trains and
    rank 0 alone tunes and saves. `seconds_before`: time spent reading and encoding, counted
    in params.json's train_seconds. `cold_users` (held out by `--cold-users`): their
    validation share tunes the blend of short histories (`serving_blend`)."""
    started = time.perf_counter()
    data = FitData(split.train, split.valid, vectors)
    model = TrainedUserModel("shoplm", lambda n, d: model_config(settings, n, d), train_config(settings),
                             settings.device, progress, replica)
    model.fit(data)
    if not replica.is_main:
        return model.log
    best = best_epoch(model.log)
    popularity = Popularity(settings.popularity_half_life_days)
    popularity.fit(data)
    blend = serving_blend(model.score, split, popularity.popularity, cold_users)  # the engine's cold-start mix
    save_model(model.model, item_ids, out, {
        "cold_items": cold, "cold_items_seed": settings.cold_items_seed,
        "cold_users": cold_users_share, "cold_users_seed": settings.cold_users_seed,
        "event_weights": settings.event_weights, "train": asdict(model.train_cfg),
        "training_fingerprint": training_fingerprint(item_ids, split),
        "best_epoch": best.get("epoch"), "valid_ndcg@10": best.get("valid_ndcg@10"),
        **training_stop(model.log, model.train_cfg),
        "train_seconds": round(seconds_before + time.perf_counter() - started, 1),
    }, files={"train_log.json": json.dumps(model.log, indent=2), "blend.json": blend.to_json()})
    return model.log


COLD_BLEND_KS = (1, 2, 3)  # the history lengths whose blend held-out users tune: buckets 1 and 2-3


def serving_blend(score: Callable[[Histories], np.ndarray], split: Split, popularity: np.ndarray,
                  cold_users: ColdUsers | None = None) -> Blend:
    """The engine's mix of the model and popularity by history length (`blend.Blend`), tuned
    on the validation targets; with held-out users, buckets 1 and 2-3 are tuned again on the
    first 1-3 events of the validation users among them (whose events trained nothing):
    validation histories of training users are rarely that short."""
    blend = tune_recommend_blend(score, split.valid, popularity)
    if cold_users is None or not len(cold_users.valid):
        return blend
    warm = blend.tuned_on
    blend = tune_recommend_blend(score, prefix_cases(cold_users.valid, COLD_BLEND_KS), popularity, blend)
    blend.tuned_on = f"{warm}; held-out validation users' first events: {blend.tuned_on}"
    return blend


def training_stop(log: list[dict], cfg: TrainConfig) -> dict:
    """How a run ended, for params.json: epochs done, planned (the most `cfg.epochs`), what
    stopped it (epochs, patience: early stopping, cap: `max_minutes`), and `cut_short` when
    the cap stopped it while validation was still improving at the last epoch."""
    stopped = log[-1].get("stopped", "epochs") if log else "cap"
    improving = bool(log) and best_epoch(log).get("epoch") == log[-1]["epoch"]
    return {"epochs": len(log), "planned_epochs": cfg.epochs, "stopped": stopped,
            "cut_short": stopped == "cap" and (improving or not log), "max_minutes": cfg.max_minutes}


def cut_short_warning(stop: dict) -> str | None:
    """A loud line for a run the wall-clock cap stopped while it was still improving, else None."""
    if not stop.get("cut_short"):
        return None
    return (f"CUT SHORT: the wall-clock cap ({stop['max_minutes']:g} minutes) stopped training after "
            f"{stop['epochs']} of at most {stop['planned_epochs']} epochs ({stop['epochs'] / stop['planned_epochs']:.0%}) "
            "while validation NDCG@10 was still improving; a longer run would likely be stronger. Give more time "
            "(SHOPLM_RECOMMEND_MAX_MINUTES) or a GPU")


def best_epoch(log: list[dict]) -> dict:
    """The log row of the best validation NDCG@10 (the epoch whose weights were kept); {} if none."""
    return max(log, key=lambda row: row["valid_ndcg@10"]) if log else {}
