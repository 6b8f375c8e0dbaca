"""The cross-encoder: a query and an item's text read together by one Transformer.

The dense model compares two vectors computed apart; a cross-encoder attends across the
query's and the item's tokens, so it sees which query term meets which part of the title
(Nogueira & Cho, 2019, "Passage Re-ranking with BERT"). Too slow for a whole catalog, it
scores each query's top `depth` candidates (by reciprocal-rank fusion of BM25 and the dense
model), and its score is one more feature of the re-ranker (`shoplm.search.rerank`).

It starts from the fine-tuned dense model's Transformer with a fresh one-logit head over the
mean of the pair's token vectors (`CrossModel`; the head learns at its own, higher rate) and
learns with the product's softmax objective: each judged positive against `group - 1` of its
hard negatives (judged irrelevant, BM25 ranks 3-30), P(positive | query) = softmax over the group. The loop is
ours, as in `shoplm.search.train`: it is a dozen lines, and the time limit and the progress bar
need to live inside it.

Why mean pooling and not transformers' `AutoModelForSequenceClassification`: that head reads
the [CLS] vector through BERT's pooler, which all-MiniLM-L6-v2 never trained (it was trained
to be read by the mean of its token vectors). On Home Depot (fine-tuned model, 300 steps, each
of 300 dev queries' 60 candidates ordered by the cross-encoder alone, NDCG@10): [CLS] + pooler
0.314, mean pooling 0.331, the cosine of the query's and the title's token means 0.306.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from shoplm.atomic import recover_dir, staged_dir
from shoplm.lm.encoder import CROSS_DIR  # noqa: F401  (re-exported: where a model directory keeps it)
from shoplm.lm.encoder import in_length_chunks
from shoplm.errors import IndexMismatch
from shoplm.progress import Progress, quiet


@dataclass
class CrossConfig:
    steps: int = 1000  # of `batch_size` positives, each with `group - 1` negatives
    batch_size: int = 16
    group: int = 6
    lr: float = 2e-4  # the Transformer's peak rate
    head_lr: float = 2e-3  # the fresh one-logit head's: at the body's rate it barely moved in 1,000 steps
    warmup: float = 0.1
    max_length: int = 64  # tokens of query + item text
    max_minutes: float = 9.0  # as settings.search_cross_minutes
    seed: int = 13


HEAD_FILE = "head.safetensors"  # the one-logit head; the Transformer is saved as transformers saves it


class CrossModel(torch.nn.Module):
    """A Transformer (transformers' `AutoModel`) and a linear one-logit head over the mean of
    the pair's token vectors (padding left out)."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        self.head = torch.nn.Linear(body.config.hidden_size, 1)

    def forward(self, **batch) -> torch.Tensor:  # (m,) logits
        hidden = self.body(**batch).last_hidden_state  # (m, tokens, hidden)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).view(-1)


class CrossEncoder:
    """`CrossEncoder.load(dir).scores(query, texts) -> (m,)`; higher = more relevant."""

    def __init__(self, model, tokenizer, max_length: int, device: str = "cpu", bf16: bool = False):
        self.model, self.tokenizer, self.max_length = model.eval(), tokenizer, max_length
        self.device, self.bf16 = device, bf16
        self.trained_steps = 0  # set by `train_cross_encoder`

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return self.read([query] * len(texts), texts).float().cpu().numpy()

    def read(self, queries: Sequence[str], texts: Sequence[str], chunk: int = 32) -> torch.Tensor:
        """(m,) logits of the (query, text) pairs in their order, read in chunks of `chunk` pairs
        sorted by length, each padded only to its own longest: one batch padded every pair to the
        longest title of the lot (Home Depot: 20 tokens on average, 50 and more for some)."""
        return in_length_chunks([len(q) + len(t) for q, t in zip(queries, texts)], chunk,  # characters ~ tokens
                                lambda rows: self._logits([queries[i] for i in rows], [texts[i] for i in rows]))

    def _logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(queries), list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(**batch)

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        with staged_dir(directory) as tmp:
            self.model.body.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()}, str(tmp / HEAD_FILE))

    @classmethod
    def load(cls, directory: Path, max_length: int = 64, device: str = "cpu", bf16: bool = False) -> "CrossEncoder | None":
        """The cross-encoder saved in `directory`, or None when there is none."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        directory = recover_dir(Path(directory))
        if not (directory / "config.json").is_file():
            return None
        if not (directory / HEAD_FILE).is_file():
            raise IndexMismatch(f"{directory} holds a cross-encoder without {HEAD_FILE} (an older shoplm's [CLS] head); "
                                "retrain the model directory with `shoplm train search`")
        model = CrossModel(AutoModel.from_pretrained(str(directory), local_files_only=True))
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        return cls(model.to(device), AutoTokenizer.from_pretrained(str(directory), local_files_only=True), max_length,
                   device, bf16)


def train_cross_encoder(base_model: Path, texts: Mapping[str, str], positives: Sequence[tuple[str, str]],
                        negatives: Mapping[str, Sequence[str]], cfg: CrossConfig, device: str = "cpu",
                        bf16: bool = False, progress: Progress = quiet) -> CrossEncoder:
    """Fine-tune a cross-encoder from `base_model` (a transformers/sentence-transformers
    directory) on (query, item_id) `positives`, each against hard `negatives[query]`;
    stops after `cfg.steps` or `cfg.max_minutes`, the rate decaying to 0 by whichever comes first."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # a sentence-transformers directory's unused pooler notice is expected
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    pools = {q: [n for n in negatives.get(q, ()) if n in texts] for q in {q for q, _ in positives}}  # known negatives
    usable = [(q, i) for q, i in positives if i in texts and len(pools[q]) >= cfg.group - 1]
    rng.shuffle(usable)
    model = CrossModel(AutoModel.from_pretrained(str(base_model), local_files_only=True)).to(device)
    encoder = CrossEncoder(model, AutoTokenizer.from_pretrained(str(base_model), local_files_only=True), cfg.max_length,
                           device, bf16)
    if not usable:
        return encoder
    head, body = list(model.head.parameters()), list(model.body.parameters())
    optimizer = torch.optim.AdamW([{"params": body, "peak": cfg.lr}, {"params": head, "peak": cfg.head_lr}],
                                  lr=cfg.lr, weight_decay=0.01)
    started, warm = time.monotonic(), max(1, int(cfg.warmup * cfg.steps))
    model.train()
    for step in range(cfg.steps):
        spent = (time.monotonic() - started) / (cfg.max_minutes * 60)
        decay = min((cfg.steps - step) / max(1, cfg.steps - warm), (1 - spent) / (1 - cfg.warmup))
        for group in optimizer.param_groups:
            group["lr"] = group["peak"] * max(0.0, min((step + 1) / warm, decay))
        queries, items = [], []
        for k in range(cfg.batch_size):
            query, item = usable[(step * cfg.batch_size + k) % len(usable)]
            queries += [query] * cfg.group
            items += [texts[item]] + [texts[n] for n in rng.sample(pools[query], cfg.group - 1)]
        logits = encoder.read(queries, items).float().view(cfg.batch_size, cfg.group)
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(cfg.batch_size, dtype=torch.long, device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        encoder.trained_steps = step + 1
        progress("cross-encoder", step + 1, cfg.steps, {"loss": float(loss.detach())})
        if spent >= 1.0:
            break
    model.eval()
    return encoder


def cross_rows(bm25_rank: np.ndarray, dense_rank: np.ndarray, depth: int, rrf_k: int = 60) -> np.ndarray:
    """Positions (among a query's candidates) of the `depth` best by reciprocal-rank fusion of
    their BM25 and dense ranks: the ones the cross-encoder reads."""
    fused = 1.0 / (rrf_k + bm25_rank) + 1.0 / (rrf_k + dense_rank)
    return np.argsort(-fused, kind="stable")[:depth]


