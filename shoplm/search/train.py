"""Fine-tuning the encoder for search: in-batch softmax over (query, item) positives.

`train_search` is one readable loop: `lr_at(step)`, `make_batches`, `dev_ndcg`, and
`for step in range(steps)`. Each batch holds B (query, positive) pairs plus up to B hard
negatives (judged-irrelevant items, else BM25 results that are not judged relevant),
never the same query or item text twice, so no in-batch "negative" is a copy of a positive.
Every `eval_every` steps NDCG@10 on dev queries picks the best weights (early stopping with
`patience`); the best ones are written as a sentence-transformers directory that
`Encoder(model=DIR)` loads.

The same loop trains data-parallel (`shoplm jobs train search`), one `replica` per worker:
each encodes its share of every batch and gathers the others' vectors, so the softmax
still runs over the whole batch (`batch_loss`).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch

from shoplm.device import autocast, pick_device, use_bf16
from shoplm.lm.encoder import in_length_chunks
from shoplm.lm.encoder import model_dir as resolve_model_dir  # fit_reranker has a parameter model_dir
from shoplm.errors import NoTrainingData
from shoplm.atomic import staged_dir
from shoplm.search.lexical import LexicalIndex
from shoplm.search.loss import InBatchSoftmaxLoss, LossConfig
from shoplm.metrics import ranking_metrics
from shoplm.replica import IN_PROCESS, Replica
from shoplm.progress import Progress, quiet
from shoplm.data.text import item_texts
from shoplm.data.readers import read_events, read_items, read_judgments
from shoplm.search.data import Pair, SearchInputs, pairs_from_events, pairs_from_judgments, qrels_by_query, split_queries
from shoplm.search.rerank_train import fit_reranker, ranker_seconds
from shoplm.lm.schedule import lr_at


@dataclass
class SearchTrainConfig:
    batch_size: int = 64  # pairs per batch; each sees 2B - 1 negatives at most
    epochs: float = 1.0
    lr: float = 1e-4  # peak; few hundred steps on CPU, so higher than the usual 2e-5
    warmup: float = 0.1  # share of steps with linear warmup, then linear decay to 0
    weight_decay: float = 0.01
    temperature: float = 0.05  # scale 20
    symmetric: bool = True
    max_seq_length: int = 64  # tokens; Home Depot titles are <= 56
    encode_chunk: int = 32  # texts per forward pass, sorted by length (0: the whole batch in one)
    bm25_negative_ranks: tuple[int, int] = (3, 30)  # hard negatives drawn from these BM25 ranks
    eval_every: int = 100  # steps between dev NDCG@10 checks (~25 s each on 2 CPU cores)
    patience: int = 3  # checks without improvement before stopping
    dev_eval_queries: int = 200  # dev queries scored during training (all dev in `shoplm eval search`)
    dev_pool_depth: int = 20  # BM25 candidates per dev query added to the dev ranking pool
    max_minutes: float = 60.0
    seed: int = 13
    device: str | None = None
    bf16: bool | None = None


def search_train_config(settings, **overrides) -> SearchTrainConfig:
    """The fine-tuning config of `shoplm train search` from the settings (SHOPLM_SEARCH_*);
    `overrides` that are None keep the setting. The seed defaults to search_split_seed."""
    cfg = SearchTrainConfig(
        batch_size=settings.search_batch_size, epochs=settings.search_epochs, lr=settings.search_lr,
        temperature=settings.search_temperature, max_seq_length=settings.search_max_seq_length,
        max_minutes=settings.search_max_minutes, seed=settings.search_split_seed, device=settings.device,
        bf16=settings.encoder_bf16)
    return replace(cfg, **{name: value for name, value in overrides.items() if value is not None})


class Batch(NamedTuple):
    queries: list[str]  # (B,)
    docs: list[str]  # (B + H,): positives of each query, then hard negatives
    weights: list[float]  # (B,)


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_dev_ndcg: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    ranker: dict | None = None  # the re-ranker's summary (`fit_reranker`), when one was trained
    planned_steps: int = 0  # epochs x batches: what the run set out to do
    cut_short: bool = False  # True when the wall-clock cap (`max_minutes`) stopped it before planned_steps


def cut_short_warning(summary: Mapping, max_minutes: float | None = None) -> str | None:
    """A loud line for a fine-tuning run the wall-clock cap cut short (`shoplm_train.json`'s
    summary or a TrainResult as a dict), else None."""
    if not summary.get("cut_short"):
        return None
    done, planned = summary["steps"], summary["planned_steps"]
    cap = f" ({max_minutes:g} minutes)" if max_minutes else ""
    return (f"CUT SHORT: the wall-clock cap{cap} stopped fine-tuning after {done:,} of {planned:,} planned steps "
            f"({done / max(1, planned):.0%}); this model is weaker than a full run. Give more time "
            "(--max-minutes, SHOPLM_SEARCH_MAX_MINUTES), fewer --epochs, or a GPU")


def model_training(model_dir: Path | None) -> dict | None:
    """What `shoplm_train.json` of a fine-tuned model says about its run (steps done, planned,
    cut short), or None without one."""
    path = Path(model_dir) / "shoplm_train.json" if model_dir else None
    if path is None or not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return {key: summary[key] for key in ("steps", "planned_steps", "cut_short", "seconds") if key in summary}


def mine_negatives(pairs: Sequence[Pair], qrels: Mapping[str, Mapping[str, float]], lexical: LexicalIndex,
                   min_relevance: float, ranks: tuple[int, int]) -> dict[str, list[str]]:
    """query -> hard-negative item ids: judged-irrelevant items first, then BM25 results at
    `ranks` that are not judged relevant (unjudged BM25 hits are mostly wrong sizes/variants)."""
    queries = sorted({p.query for p in pairs})
    hits = lexical.search(queries, ranks[1])
    out: dict[str, list[str]] = {}
    for query, row in zip(queries, hits.ids):
        judged = qrels.get(query, {})
        irrelevant = [i for i, r in judged.items() if r < min_relevance]
        lexical_hard = [i for i in row[ranks[0]:] if i and judged.get(i, 0.0) < min_relevance and i not in irrelevant]
        out[query] = irrelevant + lexical_hard
    return out


def make_batches(pairs: Sequence[Pair], negatives: Mapping[str, list[str]], texts: Mapping[str, str],
                 batch_size: int, rng: random.Random) -> list[Batch]:
    """Shuffled batches with no repeated query or item text; a pair that would repeat one
    waits for the next batch. One hard negative per pair when a non-clashing one exists."""
    pending = list(pairs)
    rng.shuffle(pending)
    batches: list[Batch] = []
    while pending:
        queries, docs, weights, negs, seen, later = [], [], [], [], set(), []
        for pair in pending:
            doc = texts[pair.item_id]
            if len(queries) == batch_size or pair.query in seen or doc in seen:
                later.append(pair)
                continue
            queries.append(pair.query)
            docs.append(doc)
            weights.append(pair.weight)
            seen.update((pair.query, doc))
            options = negatives.get(pair.query, [])
            for item in rng.sample(options, min(len(options), 3)):
                if texts[item] not in seen:
                    negs.append(texts[item])
                    seen.add(texts[item])
                    break
        batches.append(Batch(queries, docs + negs, weights))
        pending = later
    return batches


@torch.inference_mode()
def embed(model, texts: Sequence[str], device: str, bf16: bool, batch_size: int = 64) -> torch.Tensor:
    """float32[n, dim], L2-normalised, in the order given (batches sorted by length inside)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), model.get_embedding_dimension())
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        features = {k: v.to(device) for k, v in model.preprocess([texts[i] for i in rows]).items()
                    if isinstance(v, torch.Tensor)}
        with autocast(device, bf16):
            vectors = model(features)["sentence_embedding"]  # (b, dim)
        out[rows] = torch.nn.functional.normalize(vectors.float(), dim=-1).cpu()
    return out


def dev_ndcg(model, pool_ids: list[str], pool_texts: list[str], queries: list[str],
             qrels: Mapping[str, Mapping[str, float]], device: str, bf16: bool) -> float:
    """NDCG@10 of the dev queries ranking a fixed pool (their judged items + BM25 candidates)."""
    model.eval()
    items = embed(model, pool_texts, device, bf16)  # (m, dim)
    q = embed(model, queries, device, bf16)  # (n, dim)
    top = torch.topk(q @ items.T, k=min(10, len(pool_ids)), dim=1).indices.numpy()  # (n, 10)
    ranked = [[pool_ids[j] for j in row] for row in top]
    model.train()
    return ranking_metrics(ranked, [qrels[x] for x in queries], ks=(10,), mrr_k=10)["ndcg@10"]


def dev_pool(dev_queries: list[str], qrels: Mapping[str, Mapping[str, float]], lexical: LexicalIndex,
             texts: Mapping[str, str], depth: int) -> tuple[list[str], list[str]]:
    ids = {i for q in dev_queries for i in qrels[q] if i in texts}
    ids.update(i for row in lexical.search(dev_queries, depth).ids for i in row if i)
    ids = sorted(ids)
    return ids, [texts[i] for i in ids]


def train_search(
    texts: Mapping[str, str],
    train_pairs: Sequence[Pair],
    dev_qrels: Mapping[str, Mapping[str, float]],
    negatives: Mapping[str, list[str]],
    lexical: LexicalIndex,
    out: Path,
    cfg: SearchTrainConfig,
    base_model: Path | None = None,
    progress: Progress = quiet,
    replica: Replica = IN_PROCESS,
) -> TrainResult:
    """Fine-tune `base_model` (default: bundled MiniLM) on `train_pairs`; write the best model to `out`.
    `texts`: item_id -> item text; `dev_qrels`: dev query -> item -> relevance. In a data-parallel
    group every replica runs this with the same seed (so the same batches); rank 0 scores dev
    and writes `out`."""
    from sentence_transformers import SentenceTransformer

    pairs = [p for p in train_pairs if p.item_id in texts]
    if not pairs:
        raise NoTrainingData("no training pairs name an item of the catalog; check that --items is the "
                             "catalog the judgments/events refer to")
    started = time.monotonic()
    random.seed(cfg.seed); np.random.seed(cfg.seed); torch.manual_seed(cfg.seed + replica.rank)  # noqa: E702
    rng = random.Random(cfg.seed)
    device = pick_device(cfg.device)
    bf16 = use_bf16(cfg.bf16, device)
    model = SentenceTransformer(str(resolve_model_dir(base_model)), device=device, local_files_only=True)
    saved_max_len = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length
    loss_fn = InBatchSoftmaxLoss(replica.wrap(model), LossConfig(cfg.temperature, cfg.symmetric))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

    dev_queries = sorted(dev_qrels)
    dev_queries = rng.sample(dev_queries, min(cfg.dev_eval_queries, len(dev_queries)))
    pool_ids, pool_texts = dev_pool(dev_queries, dev_qrels, lexical, texts, cfg.dev_pool_depth)
    batches = make_batches(pairs, negatives, texts, cfg.batch_size, rng)
    steps = max(1, math.ceil(cfg.epochs * len(batches)))

    def check(step: int) -> float:  # scored by rank 0, told to all
        score = dev_ndcg(model, pool_ids, pool_texts, dev_queries, dev_qrels, device, bf16) \
            if dev_queries and replica.is_main else 0.0
        return float(replica.all_sum([score])[0])

    best = TrainResult(steps=0, best_step=0, best_dev_ndcg=check(0))
    best.history.append({"step": 0, "dev_ndcg@10": best.best_dev_ndcg})
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    since_best, losses, out_of_time = 0, [], False
    best.planned_steps = steps
    for step in range(steps):
        if step and step % len(batches) == 0:
            batches = make_batches(pairs, negatives, texts, cfg.batch_size, rng)
        batch = batches[step % len(batches)]
        spent = float(replica.all_sum([(time.monotonic() - started) / (cfg.max_minutes * 60)])[0]) / replica.world
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, cfg, spent)
        loss = batch_loss(model, loss_fn, batch, device, bf16, replica, cfg.encode_chunk)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # one sync per step, for the progress bar
        out_of_time = replica.any(time.monotonic() - started > cfg.max_minutes * 60)
        best.steps = step + 1
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps or out_of_time:
            score = check(step + 1)
            best.history.append({"step": step + 1, "dev_ndcg@10": score, "loss": float(np.mean(losses[-cfg.eval_every:]))})
            if score > best.best_dev_ndcg:
                best.best_dev_ndcg, best.best_step, since_best = score, step + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
        progress("fine-tune", step + 1, steps, {"loss": losses[-1], "dev_ndcg@10": best.history[-1]["dev_ndcg@10"]})
        if out_of_time or since_best >= cfg.patience:
            break
    best.cut_short = out_of_time and best.steps < steps
    model.load_state_dict(best_state)
    model.max_seq_length = saved_max_len  # read whole item texts at inference; titles fit either way
    best.seconds = time.monotonic() - started
    if replica.is_main:
        _save(model, out, {"config": asdict(cfg), "pairs": len(pairs), **asdict(best)})
    return best


def batch_loss(model, loss_fn: InBatchSoftmaxLoss, batch: Batch, device: str, bf16: bool,
               replica: Replica = IN_PROCESS, chunk: int = 0) -> torch.Tensor:
    """The in-batch softmax loss of `batch`. A replica encodes its share of the queries with
    their positives and its share of the hard negatives, then gathers every replica's vectors
    (gradients flow back to each one's rows): the softmax runs over the whole batch, as
    in-process. Splitting the batch's softmax instead would drop the other shares' negatives."""
    n = len(batch.queries)
    mine, negatives = replica.shard(np.arange(n)), replica.shard(np.arange(n, len(batch.docs)))
    encode = mine if len(mine) else np.arange(1)  # a replica without a query encodes one, gathered as none
    with autocast(device, bf16):
        q = _embed_sorted(model, loss_fn, [batch.queries[i] for i in encode], device, chunk)  # (b, dim)
        d = _embed_sorted(model, loss_fn, [batch.docs[i] for i in np.concatenate([encode, negatives])], device,
                          chunk)  # (b + h, dim)
        b = len(mine)
        q = replica.all_gather(q[:b])  # (B, dim)
        d = torch.cat([replica.all_gather(d[:b]), replica.all_gather(d[len(encode):])])  # (B + H, dim)
        weights = replica.all_gather(torch.tensor([batch.weights[i] for i in mine], device=device))  # (B,)
        return loss_fn.from_embeddings(q, d, weights)


def _features(model, texts: list[str], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in model.preprocess(texts).items() if isinstance(v, torch.Tensor)}


def _embed_sorted(model, loss_fn: InBatchSoftmaxLoss, texts: list[str], device: str, chunk: int) -> torch.Tensor:
    """(n, dim) L2-normalised vectors of `texts` in their order, with gradients. With `chunk` > 0 the
    texts go through the encoder in length-sorted chunks of that many, each padded only to its own
    longest: one forward pads every text to the batch's longest (Home Depot titles: 20 tokens on
    average, 43 the longest of a random 128), so most of a step's compute was padding. The vectors,
    and so the loss, are those of one forward up to float rounding."""
    if chunk <= 0 or len(texts) <= chunk:
        return loss_fn.embed(_features(model, texts, device))
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return in_length_chunks(lengths, chunk, lambda rows: loss_fn.embed(_features(model, [texts[i] for i in rows], device)))


def _save(model, out: Path, summary: dict) -> None:
    """A sentence-transformers directory plus `shoplm_train.json`, swapped in whole."""
    with staged_dir(out) as tmp:
        model.save(str(tmp))
        (tmp / "shoplm_train.json").write_text(json.dumps(summary, indent=2, default=str))


def training_inputs(settings, items_path: Path, judgments_path: Path | None, events_path: Path | None,
                    cfg: SearchTrainConfig, progress: Progress = quiet) -> SearchInputs:
    """Files -> pairs, split, BM25 negatives. Judged queries are split by query; event pairs
    train only on their train-split queries too, and dev falls back to event pairs (weight as
    relevance) when there are no judgments."""

    progress("read items", 0, None)
    items = read_items(items_path)
    texts = dict(zip((i.item_id for i in items), item_texts(items, settings.item_text_template)))
    pairs = pairs_from_judgments(read_judgments(judgments_path), settings.search_positive_min_relevance) if judgments_path else []
    qrels = qrels_by_query(read_judgments(judgments_path)) if judgments_path else {}
    if events_path:
        progress("read events", 0, None)
        event_pairs = pairs_from_events(read_events(events_path), settings.search_event_window_s, settings.event_weights)
        pairs += event_pairs
        if not judgments_path:
            qrels = {}
            for p in event_pairs:
                qrels.setdefault(p.query, {})[p.item_id] = p.weight
    # The split seed comes from settings, never from cfg.seed: `eval search` must see the same dev queries.
    split = split_queries(qrels, settings.search_dev_fraction, settings.search_split_seed)
    dev = set(split.dev)
    # A share of the train queries trains the re-ranker, not the encoder: the fine-tuned model's
    # scores of its own training queries are inflated, and a ranker fitted on them would trust it blindly.
    held = set(split_queries(split.train, settings.search_ranker_fraction, settings.search_split_seed + 1).dev) \
        if settings.search_ranker_fraction > 0 else set()
    train_pairs = [p for p in pairs if p.query not in dev and p.query not in held]
    progress("BM25 + hard negatives", 0, None)
    lexical = LexicalIndex(list(texts), list(texts.values()), language=settings.language)
    negatives = mine_negatives(train_pairs, qrels, lexical, settings.search_positive_min_relevance,
                               cfg.bm25_negative_ranks)
    return SearchInputs(texts, train_pairs, {q: qrels[q] for q in split.dev}, negatives, lexical,
                        {q: qrels[q] for q in sorted(held)})


def run_training(settings, items_path: Path, judgments_path: Path | None, events_path: Path | None, out: Path,
                 cfg: SearchTrainConfig, base_model: Path | None = None,
                 progress: Progress = quiet) -> TrainResult:
    """`training_inputs` from the files -> `train_search`."""
    inputs = training_inputs(settings, items_path, judgments_path, events_path, cfg, progress)
    with_ranker = len(inputs.ranker_qrels) >= RANKER_MIN_QUERIES
    if with_ranker:  # `max_minutes` bounds the whole command: fine-tuning leaves time to encode the catalog
        progress("time the encoder", 0, None)
        reserve = ranker_seconds(settings, list(inputs.texts.values()), base_model or settings.encoder_model,
                                 len(inputs.ranker_qrels))
        fine_tune, cross_minutes = split_budget(cfg.max_minutes, reserve / 60, settings.search_cross_minutes
                                                if settings.search_cross_depth > 0 else 0.0)
        cfg = replace(cfg, max_minutes=fine_tune)
    progress("fine-tune", 0, None)
    result = train_search(*inputs[:5], out, cfg, base_model or settings.encoder_model, progress)
    if with_ranker:
        result.ranker = fit_reranker(settings, inputs, out, cfg.seed, progress, cross_minutes)
    return result


def split_budget(total: float, reserve: float, cross: float, cross_min: float = 1.0) -> tuple[float, float]:
    """(fine-tuning, cross-encoder training) minutes out of `total`, given the estimated
    `reserve` minutes of everything after fine-tuning, of which `cross` are the cross-encoder's
    training. Fine-tuning keeps at least a quarter of `total`; when the rest does not fit, the
    cross-encoder trains for less (never under `cross_min`), so the command keeps its bound
    even on a CPU slow enough (2.6 ms a title) that the reserve exceeds `total`."""
    floor, fixed = total / 4, reserve - cross
    if cross > 0:
        cross = min(cross, max(cross_min, total - floor - fixed))
    return max(floor, total - fixed - cross), cross


RANKER_MIN_QUERIES = 50  # held-out judged queries below which no re-ranker is trained: it would learn noise
