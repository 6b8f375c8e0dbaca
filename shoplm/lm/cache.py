"""`EmbeddingCache`: vectors keyed by (model fingerprint, text hash), so unchanged items are
never encoded twice, across runs and processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from shoplm.atomic import save_array, write_text

if TYPE_CHECKING:
    from shoplm.lm.encoder import Encoder


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
        if len(texts):
            self.adopt(np.frombuffer(b"".join(map(text_hash, texts)), dtype=np.uint8).reshape(-1, 16), vectors)

    def adopt(self, hashes: np.ndarray, vectors: np.ndarray) -> int:
        """Take vectors encoded elsewhere (`shoplm jobs embed`), keyed by `text_hash` bytes
        (uint8[n, 16]); saves; returns how many were new."""
        keys = [h.tobytes() for h in np.ascontiguousarray(hashes, dtype=np.uint8)]
        seen: set[bytes] = set()
        fresh = [i for i, k in enumerate(keys) if not (k in self._rows or k in seen or seen.add(k))]
        if fresh:
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, np.asarray(vectors, dtype=np.float32)[fresh]])
            self._rows.update((keys[i], start + j) for j, i in enumerate(fresh))
            self.save()
        return len(fresh)

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
