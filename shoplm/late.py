"""Late interaction: the fine-tuned model's token vectors of a query and a title, compared
term by term (ColBERT's MaxSim, Khattab & Zaharia, SIGIR 2020), as two re-ranker features.

The dense model pools each text into one vector before comparing, so a title can score high
while one query term ("white", "4 ft") meets nothing in it. For every query token MaxSim takes
its best cosine among the title's tokens; the re-ranker reads the mean of those (soft term
coverage) and their minimum (the worst-covered query term). Both come from the encoder
already trained for search, so nothing else is trained. Offline on Home Depot (2026-11-30,
the default pipeline's candidates, 3 LightGBM seeds) the re-ranker went from 0.4365 to 0.4464
NDCG@10; limited to the top 60 candidates by fusion it gained less (0.4431), so every
candidate gets them, and the catalog's token vectors are kept (`TokenStore`).

`TokenStore` maps a text to its token vectors (float16, L2-normalised, [CLS] and [SEP] left
out), encodes only texts it does not hold, and saves as three plain arrays beside the
embedding cache. No library keeps ragged per-text matrices keyed by text, hence this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.atomic import save_array, write_text
from shoplm.encoder import EmbeddingCache, Encoder, text_hash

TOKENS_DIR = "tokens"  # inside an embedding cache's model directory


def maxsim(query: np.ndarray, items: Sequence[np.ndarray]) -> np.ndarray:
    """float32 (m, 2): per item, the mean and the minimum over the query's tokens (tq, d) of
    the best cosine with the item's tokens (ti, d); 0 where either side has no token."""
    out = np.zeros((len(items), 2), dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    if not len(q):
        return out
    for j, item in enumerate(items):
        if len(item):
            best = (q @ np.asarray(item, dtype=np.float32).T).max(axis=1)  # (tq,)
            out[j] = best.mean(), best.min()
    return out


class TokenStore:
    """Token vectors by text hash for one model: `<cache dir>/<fingerprint>/tokens/`
    (`hashes.npy` (n, 16) uint8, `offsets.npy` (n + 1,) int64, `vectors.npy` (N, dim) float16)."""

    def __init__(self, directory: Path | None, dim: int):
        self.dir, self.dim = (Path(directory) if directory else None), dim
        self._rows: dict[bytes, int] = {}
        self._parts: list[np.ndarray] = []  # the i-th text's (t_i, dim) float16 vectors
        if self.dir is not None and (self.dir / "offsets.npy").is_file():
            hashes, offsets = np.load(self.dir / "hashes.npy"), np.load(self.dir / "offsets.npy")
            vectors = np.load(self.dir / "vectors.npy")
            for i, h in enumerate(hashes[:len(offsets) - 1]):
                self._rows[h.tobytes()] = i
                self._parts.append(vectors[offsets[i]:offsets[i + 1]])

    @classmethod
    def of(cls, cache: EmbeddingCache) -> "TokenStore":
        """The store beside an embedding cache (same model fingerprint)."""
        return cls(cache.dir / TOKENS_DIR, cache.dim)

    @classmethod
    def beside(cls, cache_dir: Path, encoder: Encoder) -> "TokenStore":
        """The store beside `encoder`'s embedding cache under `cache_dir`, without loading that cache."""
        return cls(Path(cache_dir) / encoder.fingerprint / TOKENS_DIR, encoder.dim)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, encoder: Encoder, texts: Sequence[str], vectors: EmbeddingCache | None = None,
            progress=None, save: bool = True) -> list[np.ndarray]:
        """Each text's token vectors, encoding the missing ones in one pass that also yields
        their pooled vectors, which go into `vectors` (the catalog is read once, not twice);
        `save`: write the store when it grew (batch jobs; the service keeps new ones in memory)."""
        keys = [text_hash(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            first = dict(zip(keys, texts))
            fresh = [first[k] for k in missing]
            pooled, tokens = encoder.encode_tokens(fresh, progress=progress)
            for k, t in zip(missing, tokens):
                self._rows[k] = len(self._parts)
                self._parts.append(t)
            if vectors is not None:
                vectors.add(fresh, pooled)
            if save and self.dir is not None:
                self.save()
        return [self._parts[self._rows[k]] for k in keys]

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        offsets = np.zeros(len(self._parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in self._parts], out=offsets[1:])
        hashes = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
        vectors = np.concatenate(self._parts) if self._parts else np.zeros((0, self.dim), dtype=np.float16)
        # vectors first, offsets last: a reader takes the offsets' count, so a crash in between
        # leaves a consistent (older) prefix
        save_array(self.dir / "vectors.npy", vectors)
        save_array(self.dir / "hashes.npy", hashes)
        save_array(self.dir / "offsets.npy", offsets)
        write_text(self.dir / "params.json", f'{{"dim": {self.dim}, "count": {len(self._parts)}, "version": 1}}')
