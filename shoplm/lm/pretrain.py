"""Catalog-only adaptation: the encoder learns a new shop's own vocabulary from its item texts, no labels.

A brand-new shop has items but no judged queries and no events, so `shoplm train search` has
nothing to learn from. What the catalog alone offers is pairs that belong together: a few of
an item's title words and the item's full text, its category path (and brand) and the text,
a sentence of its description and the text. `pretrain` trains on such (anchor, positive)
pairs with the in-batch-negatives contrastive loss, MultipleNegativesRankingLoss
(Henderson et al., 2017, "Efficient Natural Language Response Suggestion for Smart Reply";
Reimers & Gurevych, 2019): in a batch of B pairs each anchor must pick its own item's text
out of all B, and each text its anchor (the symmetric form).

The title-word anchor is a crop of the item, as in the Inverse Cloze Task (Lee et al., 2019)
and Contriever's independent cropping (Izacard et al., 2022), and by default its words need
not be adjacent: each title word is kept with probability `keep` (TSDAE's word-deletion noise,
Wang et al., 2021, at its 0.6 deletion ratio), so the anchor reads like a shop query ("bath
vanity 30 in." from "Glacier Bay 30 in. Bath Vanity in White").

Why contrastive and not TSDAE itself: TSDAE trains a decoder on top of the encoder to rebuild
the sentence, and its paper reaches its figures after ~10^5 sentences x 10 epochs; on a CPU the
budget of a first run is a few hundred steps. The contrastive loss needs no decoder, trains the
exact vectors that search compares, and a few hundred steps move them (docs/experiments/
2026-12-02-pretrain.md). It is sentence-transformers' own loss module driven by a short loop
(the house style's rule 3); its `fit` and `SentenceTransformerTrainer` need the `datasets` and
`accelerate` packages, which shoplm does not install.

The output is a plain sentence-transformers directory: `SHOPLM_ENCODER_MODEL=DIR` makes search,
`shoplm train search` (its base model) and the recommendation model's text vectors use it, and
its new weights give it a new fingerprint, so its vectors never mix with another model's in
the embedding cache.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

import numpy as np
import torch

from shoplm.atomic import staged_dir
from shoplm.device import autocast, pick_device, use_bf16
from shoplm.errors import NoTrainingData
from shoplm.lm.encoder import model_dir
from shoplm.progress import Progress, quiet
from shoplm.lm.schedule import lr_at

Kind = Literal["title", "category", "description"]
KINDS: tuple[Kind, ...] = ("title", "category", "description")
SUMMARY_FILE = "shoplm_pretrain.json"


@dataclass
class PretrainConfig:
    steps: int = 300  # optimizer steps; 300 x 64 pairs cover ~19k items, ~7 minutes on a shared 2-core CPU
    batch_size: int = 64  # pairs per step: each anchor sees B - 1 in-batch negatives
    lr: float = 5e-5  # peak AdamW rate: 300 steps move a model little at the usual 2e-5
    warmup: float = 0.1  # share of steps with linear warmup, then linear decay to 0
    weight_decay: float = 0.01
    scale: float = 20.0  # cosine logits x 20, i.e. temperature 0.05 (the loss's default)
    max_seq_length: int = 64  # tokens while training; the saved model keeps its own limit
    keep: float = 0.4  # share of title words a title anchor keeps (TSDAE's deletion ratio 0.6)
    min_words: int = 2  # a title anchor keeps at least this many words (fewer when the title is shorter)
    contiguous: bool = False  # True: the anchor is a span of adjacent title words (ICT / Contriever cropping)
    typos: float = 0.0  # chance that a title anchor's word (4+ letters) gets one typo, or is split or joined
    kinds: tuple[Kind, ...] = KINDS  # anchor sources drawn from, for items that have the field
    max_minutes: float = 15.0  # wall-clock cap; the step plan's decay then follows the clock
    seed: int = 13
    device: str | None = None
    bf16: bool | None = None


class ItemText(NamedTuple):
    """What `pretrain` reads of one item: its text as search and recommendation encode it
    (`shoplm.data.text.item_texts`) and the fields its anchors come from. lm/ sits below data/,
    so the caller builds these from its items."""
    text: str
    title: str
    category: str | None = None  # a path, "Bath > Vanities"
    brand: str | None = None
    description: str | None = None


class Pair(NamedTuple):
    anchor: str  # a pseudo-query drawn from the item
    positive: str  # the item's text, as search and recommendation encode it
    kind: Kind


@dataclass
class PretrainResult:
    steps: int  # steps done
    planned_steps: int
    cut_short: bool  # True when max_minutes stopped it before planned_steps
    seconds: float
    items: int  # distinct item texts trained on
    loss_first: float  # mean loss of the first and last 10% of steps
    loss_last: float
    pairs: dict[str, int] = field(default_factory=dict)  # anchor kind -> pairs trained on


_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CONTENT = re.compile(r"[^\W\d_]{3,}")  # a word with 3+ letters: anchors of only "in." and "x" say nothing


def title_anchor(title: str, rng: random.Random, cfg: PretrainConfig) -> str | None:
    """A few of the title's words in their order: each kept with probability `keep`, at least
    `min_words`, never the whole title (whose pair would be the item with itself); None when
    the title is too short or no draw has a word of 3+ letters."""
    words = _WORD.findall(title)
    if len(words) < 2:
        return None
    n_min = min(cfg.min_words, len(words) - 1)
    for _ in range(5):
        if cfg.contiguous:
            n = rng.randint(n_min, max(n_min, min(len(words) - 1, round(cfg.keep * len(words)) + 1)))
            start = rng.randrange(len(words) - n + 1)
            kept = words[start:start + n]
        else:
            mask = [rng.random() < cfg.keep for _ in words]
            while sum(mask) < n_min:
                mask[rng.randrange(len(words))] = True
            if all(mask):
                mask[rng.randrange(len(words))] = False
            kept = [w for w, m in zip(words, mask) if m]
        if cfg.typos > 0:
            kept = with_typos(kept, rng, cfg.typos)
        anchor = " ".join(kept)
        if _CONTENT.search(anchor):
            return anchor
    return None


def with_typos(words: list[str], rng: random.Random, rate: float) -> list[str]:
    """`words` with, at `rate` per word of 4+ letters, one edit of the kinds shoppers make: a
    letter dropped, doubled or swapped with the next, the word split in two, or joined to the
    next ("deck over" for "DeckOver"). BM25 matches none of these; a model trained on typo'd
    queries learns to (Zhuang & Zuccon, 2021, "Dealing with Typos for BERT-based Passage
    Retrieval and Ranking"), which is what dense retrieval can add to a hybrid."""
    words, out = list(words), []
    joined = False  # the word at i was joined to its predecessor: one edit per word is enough
    for i, word in enumerate(words):
        if joined or len(word) < 4 or not word.isalpha() or rng.random() >= rate:
            out.append(word)
            joined = False
            continue
        at = rng.randrange(1, len(word) - 1)
        edit = rng.randrange(5)
        if edit == 0:
            out.append(word[:at] + word[at + 1:])  # dropped
        elif edit == 1:
            out.append(word[:at] + word[at] + word[at:])  # doubled
        elif edit == 2:
            out.append(word[:at] + word[at + 1] + word[at] + word[at + 2:])  # swapped
        elif edit == 3:
            out.extend((word[:at], word[at:]))  # split
        elif i + 1 < len(words):
            words[i + 1] = word + words[i + 1]  # joined to the next, which is then kept as is
            joined = True
        else:
            out.append(word)
    return out


def anchors_of(item: ItemText, rng: random.Random, cfg: PretrainConfig) -> dict[Kind, str]:
    """Every anchor kind the item's fields allow: title words; the category path's last two
    levels with the brand ("Bath Vanities, Glacier Bay"); one sentence of the description."""
    out: dict[Kind, str] = {}
    if "title" in cfg.kinds and (anchor := title_anchor(item.title, rng, cfg)):
        out["title"] = anchor
    if "category" in cfg.kinds and item.category:
        levels = [level.strip() for level in item.category.split(">") if level.strip()]
        out["category"] = ", ".join(levels[-2:] + ([item.brand] if item.brand else []))
    if "description" in cfg.kinds and item.description:
        sentences = [s for s in _SENTENCE.split(item.description) if _CONTENT.search(s)]
        if sentences:
            out["description"] = rng.choice(sentences)[:300]
    return out


def make_batch(items: Sequence[ItemText], order: list[int], rng: random.Random, cfg: PretrainConfig) -> list[Pair]:
    """Up to `batch_size` pairs from the front of `order` (consumed), one anchor kind drawn per
    item; a pair whose anchor or text is already in the batch waits (goes back to the end), so
    no in-batch "negative" is a copy of a positive."""
    batch: list[Pair] = []
    seen: set[str] = set()
    later: list[int] = []
    while order and len(batch) < cfg.batch_size:
        row = order.pop()
        options = anchors_of(items[row], rng, cfg)
        if not options:
            continue
        kind = rng.choice(sorted(options))
        anchor, positive = options[kind], items[row].text
        if anchor in seen or positive in seen or anchor == positive:
            later.append(row)
            continue
        seen.update((anchor, positive))
        batch.append(Pair(anchor, positive, kind))
    order[:0] = later
    return batch


def pretrain(items: Sequence[ItemText], out: Path, cfg: PretrainConfig, encoder_dir: Path | None = None,
             progress: Progress = quiet) -> PretrainResult:
    """Adapt `encoder_dir` (default: the bundled all-MiniLM-L6-v2) to `items` for `cfg.steps`
    steps or `cfg.max_minutes`, whichever comes first; write a sentence-transformers directory
    to `out` (swapped in whole) with `shoplm_pretrain.json` (config and result) beside it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" and "Writing model shards" bars are noise in logs
    rows = [i for i, item in enumerate(items) if item.text]
    if len(rows) < 2:
        raise NoTrainingData(f"{len(rows)} item(s) with text: catalog-only adaptation needs at least 2 "
                             "(in-batch negatives); check --items")
    started = time.monotonic()
    random.seed(cfg.seed); np.random.seed(cfg.seed); torch.manual_seed(cfg.seed)  # noqa: E702
    rng = random.Random(cfg.seed)
    device = pick_device(cfg.device)
    bf16 = use_bf16(cfg.bf16, device)
    model = SentenceTransformer(str(model_dir(encoder_dir)), device=device, local_files_only=True)
    saved_max_len = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length
    loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale, directions=("query_to_doc", "doc_to_query"),
                                           partition_mode="per_direction")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()

    order: list[int] = []
    losses: list[float] = []
    kinds: dict[str, int] = {}
    trained: set[str] = set()  # distinct item texts
    step = 0
    cut_short = False
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:  # a fresh shuffled pass over the catalog
            fresh = rows.copy()
            rng.shuffle(fresh)
            order[:0] = fresh
        batch = make_batch(items, order, rng, cfg)
        if len(batch) < 2:
            raise NoTrainingData("no two items give distinct (anchor, text) pairs; the catalog's titles "
                                 "need at least two words each for catalog-only adaptation")
        spent = (time.monotonic() - started) / (cfg.max_minutes * 60)
        losses.append(train_step(model, loss_fn, optimizer, batch, lr_at(step, cfg.steps, cfg, spent), device, bf16))
        for pair in batch:
            kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
            trained.add(pair.positive)
        progress("adapt encoder", step + 1, cfg.steps, {"loss": losses[-1]})
        if time.monotonic() - started > cfg.max_minutes * 60 and step + 1 < cfg.steps:
            cut_short = True
            break
    done = step + 1
    tail = max(1, done // 10)
    result = PretrainResult(steps=done, planned_steps=cfg.steps, cut_short=cut_short,
                            seconds=time.monotonic() - started, items=len(trained),
                            loss_first=float(np.mean(losses[:tail])), loss_last=float(np.mean(losses[-tail:])),
                            pairs=kinds)
    model.max_seq_length = saved_max_len  # read whole item texts at inference
    model.eval()
    with staged_dir(out) as tmp:
        model.save(str(tmp))
        summary = {"config": asdict(cfg), "base_model": str(model_dir(encoder_dir)), **asdict(result)}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    result.seconds = time.monotonic() - started
    return result


def train_step(model, loss_fn, optimizer: torch.optim.Optimizer, batch: Sequence[Pair], lr: float, device: str,
               bf16: bool) -> float:
    """One AdamW step on the symmetric in-batch loss of `batch` at rate `lr`; the loss, as a float."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, bf16):
        features = [_features(model, [p.anchor for p in batch], device),  # (B, t) token ids, each column
                    _features(model, [p.positive for p in batch], device)]  # padded to its own longest
        loss = loss_fn(features, labels=None)  # anchors (B, dim) x texts (B, dim) cosines, both directions
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())  # one sync per step, for the progress line


def _features(model, texts: list[str], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in model.preprocess(texts).items() if isinstance(v, torch.Tensor)}

