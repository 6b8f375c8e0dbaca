"""Late interaction: the fine-tuned model's token vectors of a query and a title, compared
term by term (ColBERT's MaxSim, Khattab & Zaharia, SIGIR 2020), as two re-ranker features.

The dense model pools each text into one vector before comparing, so a title can score high
while one query term ("white", "4 ft") meets nothing in it. For every query token MaxSim takes
its best cosine among the title's tokens; the re-ranker reads the mean of those (soft term
coverage) and their minimum (the worst-covered query term). Both come from the encoder
already trained for search, so nothing else is trained. On Home Depot (the default
pipeline's candidates, 3 LightGBM seeds) the re-ranker went from 0.4365 to 0.4464 NDCG@10
with them; limited to the top 60 candidates by fusion it gained less (0.4431), so every
candidate gets them, and the catalog's token vectors are kept (`TokenStore`).

`TokenStore` maps a text to its token vectors (float16, L2-normalised, [CLS] and [SEP] left
out), encodes only texts it does not hold, and saves as one `.npz` of three plain arrays beside
the embedding cache. No library keeps ragged per-text matrices keyed by text, hence this class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.atomic import atomic_write, dir_lock
from shoplm.lm.cache import EmbeddingCache, text_hash
from shoplm.lm.encoder import Encoder

TOKENS_DIR = "tokens"  # inside an embedding cache's model directory
FILE = "tokens.npz"


def maxsim(query: np.ndarray, items: Sequence[np.ndarray]) -> np.ndarray:
    """float32 (m, 2): per item, the mean and the minimum over the query's tokens (tq, d) of
    the best cosine with the item's tokens (ti, d); 0 where either side has no token. One
    matrix product against every item's tokens at once, then the best per item by
    `np.maximum.reduceat` (a loop over ~200 candidates was a fifth of a re-ranked query)."""
    out = np.zeros((len(items), 2), dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    filled = [j for j, item in enumerate(items) if len(item)]
    if not len(q) or not filled:
        return out
    tokens = np.concatenate([items[j] for j in filled]).astype(np.float32, copy=False)  # (T, d)
    starts = np.cumsum([0] + [len(items[j]) for j in filled[:-1]])  # (filled,)
    best = np.maximum.reduceat(q @ tokens.T, starts, axis=1)  # (tq, filled)
    out[filled, 0], out[filled, 1] = best.mean(axis=0), best.min(axis=0)
    return out


class TokenStore:
    """Token vectors by text hash for one model, in `<cache dir>/<fingerprint>/tokens/tokens.npz`
    (`hashes` (n, 16) uint8, `offsets` (n + 1,) int64, `vectors` (N, dim) float16), one file
    replaced atomically, so a reader never pairs one save's offsets with another's vectors."""

    def __init__(self, directory: Path | None, dim: int):
        self.dir, self.dim = (Path(directory) if directory else None), dim
        self._rows: dict[bytes, int] = {}
        self._parts: list[np.ndarray] = []  # the i-th text's (t_i, dim) float16 vectors
        self._merge_from_disk()

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

    def _merge_from_disk(self) -> None:
        """Adopt every text on disk that this store does not hold yet (another process may have
        added some since)."""
        if self.dir is None or not (self.dir / FILE).is_file():
            return
        with np.load(self.dir / FILE) as saved:
            hashes, offsets, vectors = saved["hashes"], saved["offsets"], saved["vectors"]
        for i, h in enumerate(hashes):
            if h.tobytes() not in self._rows:
                self._rows[h.tobytes()] = len(self._parts)
                self._parts.append(vectors[offsets[i]:offsets[i + 1]])

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
        """Merge with what is on disk, then write, under an exclusive lock (as `EmbeddingCache`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with dir_lock(self.dir):
            self._merge_from_disk()
            offsets = np.zeros(len(self._parts) + 1, dtype=np.int64)
            np.cumsum([len(p) for p in self._parts], out=offsets[1:])
            hashes = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
            vectors = np.concatenate(self._parts) if self._parts else np.zeros((0, self.dim), dtype=np.float16)
            atomic_write(self.dir / FILE, lambda handle: np.savez(handle, hashes=hashes, offsets=offsets,
                                                                  vectors=vectors.astype(np.float16)))
