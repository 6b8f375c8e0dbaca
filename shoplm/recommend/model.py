"""The shoplm recommendation model: P(next item | behaviour sequence) over text-based items.

Items are represented from their language-model text embedding through a learned
adaptor (parametric whitening + mixture of experts, as in UniSRec, Hou et al., KDD 2022),
plus an ID embedding for items seen in training that is dropped (zero) for unseen ones,
so new items are recommendable from their text alone. A small causal Transformer (or a
GRU, as in GRU4Rec, Hidasi et al., ICLR 2016) reads the sequence of item vectors; every
position predicts the next item with a full softmax over the catalog (full cross-entropy,
which Klenitskiy & Vasilev, RecSys 2023, show to be what makes SASRec strong).

Scores for the next item j after a history h_1..h_t:

    s_j = cos(state_t, v_j) / temperature            # sequence model over adapted items (t learned)
        + alpha * sum_k a_k cos(e_{h_{t-k}}, e_j)    # direct text path: the last K items' text
        + gamma * sum_k c_k C(h_{t-k}, j) * w_j       # co-occurrence path (as item k-NN)
        + beta * [j in history] + bias_j * w_j        # repeat propensity, popularity
        + (bias_new + rho * mean_nb(bias)_j) * (1 - w_j)  # ID-less items: an offset + their neighbours' popularity
        + gamma * sum_k c_k C'(h_{t-k}, j) * (1 - w_j)  # an ID-less item borrows its text neighbours' C
        + shift * (1 - seen_j)                         # new items' lift, set after training

where w_j is the weight of item j's ID evidence: in training 1 or 0 (ID dropout), in scoring
`id_weight`, 0 for new items and 1 - share * (j's training dropout chance) for seen ones. A
new item's vector v_j is its adapted text plus sigma * mean_nb(ID)_j (an item's: its text +
w_j * ID_j + (1 - w_j) * sigma * mean_nb(ID)_j), and mean_nb(x)_j is the similarity-weighted
mean of x over j's nearest seen items by text (`borrowed`).

The direct text path keeps what the zero-shot text baseline gets right (on Amazon, the
next purchase is often from the same product line as the last), and the co-occurrence path
what item k-NN gets right on sparse data (C = cosine-normalised co-occurrence counts of
the training sequences, `shoplm.recommend.baselines.item_knn.co_occurrence`); the sequence model
learns what both miss, and the learned weights blend the three. C is a fixed feature, so
in training it is cross-fitted (`shoplm.recommend.train`): a position's C comes from the other
half of the actors, never from the actor's own events, or the model would learn to trust
a feature that contains its training targets. A new item has no co-occurrence, ID vector or
popularity of its own; it borrows those of its nearest seen items by text
(`new_item_neighbours`; on Amazon a new item is often a sibling of the same product line).
After training, `shift` is set so that new items take their catalog share of the top slots
over the validation histories (`shoplm.recommend.train.calibrate_new_items`).

No part holds an (n x n) matrix, so every path is on at any catalog size: C is kept as CSR
arrays and a position reads only its K rows; C' is never built, the nonzeros read are spread
through the neighbour table (`neighbours.spread_table`); the neighbours are found once (in
chunks, or by FAISS above `neighbours.EXACT_NEIGHBOUR_ITEMS`) and saved with the model. The
direct text path caches the (n x n) text cosines up to SIM_CACHE_ITEMS items and multiplies
by the texts above. Memory O(nnz(C) + n K), besides the (P, n) logits themselves.

`UserModel(UserModelConfig(n_items=4385))`, `.scores(history (B, L)) -> (B, n_items)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shoplm.recommend.adaptor import TextAdaptor, whitening
from shoplm.recommend.cooccurrence import CSR, csr_gather, csr_tensors, lag_entries
from shoplm.recommend.neighbours import borrowed, spread_table, text_neighbours
from shoplm.recommend.sequences import Histories

SIM_CACHE_ITEMS = 10_000  # the direct text path caches the (n x n) text cosines up to this many items


@dataclass
class UserModelConfig:
    n_items: int
    text_dim: int = 384  # all-MiniLM-L6-v2
    use_text: bool = True  # False: an ID-only SASRec / GRU4Rec
    use_id: bool = True  # ID embeddings for items seen in training
    encoder: Literal["transformer", "gru"] = "transformer"
    dim: int = 128
    n_layers: int = 2
    n_heads: int = 2
    n_experts: int = 4  # UniSRec's MoE adaptor (its default is 8; 4 serve a 4k-item catalog as well)
    max_len: int = 50  # the published Amazon histories are cut at 50 items
    dropout: float = 0.3
    temperature: float = 0.5  # initial; learned. 0.5 starts near the direct text and co-occurrence paths (UniSRec fixes 0.07)
    text_path: bool = True  # direct last-K-items text similarity
    text_lags: int = 6  # K
    history_bias: bool = True
    cooc_path: bool = True  # direct co-occurrence path, C kept sparse (any catalog size)
    cooc_window: int = 3  # items at most this many events apart co-occur
    logits: Literal["cosine", "dot"] = "cosine"  # "cosine": cos(state, item) / learned temperature; "dot": state . item (SASRec)
    new_item_neighbours: int = 10  # > 0: a new item borrows the co-occurrence, ID vector and popularity of its K nearest seen items by text


class UserModel(nn.Module):
    def __init__(self, cfg: UserModelConfig, item_text: torch.Tensor | None = None,
                 seen: torch.Tensor | None = None):
        """item_text: float32 (n_items, text_dim), L2-normalised; seen: bool (n_items,), the
        items with training events (only they get an ID embedding and a popularity bias)."""
        super().__init__()
        self.cfg = cfg
        n, d = cfg.n_items, cfg.dim
        self.pad = n  # index of the padding item
        text = torch.zeros(n + 1, cfg.text_dim) if item_text is None else F.pad(item_text.float(), (0, 0, 0, 1))
        self.register_buffer("item_text", text)  # (n + 1, text_dim); the pad row is zero
        seen_f = torch.zeros(n + 1) if seen is None else F.pad(seen.float(), (0, 1))
        self.register_buffer("seen", seen_f)  # (n + 1,) 1.0 for items seen in training
        # The weight of each item's ID evidence (ID vector, popularity, co-occurrence) when
        # scoring: `seen` until training sets it from the ID dropout, see set_id_weight().
        self.register_buffer("id_weight", seen_f.clone())  # (n + 1,)
        whitened = whitening(text[:-1], d) if cfg.use_text and item_text is not None else torch.zeros(n, d)
        self.register_buffer("item_whitened", F.pad(whitened, (0, 0, 0, 1)))  # (n + 1, dim)
        self.adaptor = TextAdaptor(d, cfg.n_experts, cfg.text_dim) if cfg.use_text else None
        self._text_sim: torch.Tensor | None = None  # (n + 1, n) cache up to SIM_CACHE_ITEMS, see text_similarity()
        for name in ("cooc_indptr", "cooc_indices"):
            self.register_buffer(name, torch.zeros(n + 1 if name == "cooc_indptr" else 0, dtype=torch.int64))
        self.register_buffer("cooc_values", torch.zeros(0))  # C as CSR arrays, see set_cooccurrence()
        # Each item's nearest seen items by text, (n + 1, K) each, found on first use and kept
        # in the state dict, so that a loaded model does not search again (see text_neighbours()).
        self.register_buffer("neighbour_index", torch.zeros(0, 0, dtype=torch.int64))
        self.register_buffer("neighbour_weight", torch.zeros(0, 0))
        self._spread: tuple[torch.Tensor, ...] | None = None  # reverse-neighbour CSR, see spread_table()
        self._vectors: tuple[tuple, tuple] | None = None  # (key, item side), see _item_side()
        self.item_id = nn.Embedding(n + 1, d) if cfg.use_id else None
        if self.item_id is not None:
            nn.init.normal_(self.item_id.weight, std=0.02)
        self.item_bias = nn.Parameter(torch.zeros(n + 1))  # (n + 1,) popularity, seen items only
        self.new_item_bias = nn.Parameter(torch.tensor(0.0))  # for items without ID evidence
        # After training, the lift of items without training events alone (calibrate_new_items);
        # new_item_bias also lends to rare items, which scoring treats as partly ID-less.
        self.register_buffer("new_item_shift", torch.tensor(0.0))
        # How much of their text neighbours' ID vector (sigma) and popularity (rho) new items take.
        self.borrow_id = nn.Parameter(torch.tensor(1.0))
        self.borrow_bias = nn.Parameter(torch.tensor(1.0))
        self.position = nn.Embedding(cfg.max_len, d)
        # Small, like the ID vectors (as in BERT and RecBole's SASRec): nn.Embedding's default
        # N(0, 1) gives position vectors of norm ~sqrt(dim), which drowned the item vectors
        # (ID std 0.02; adapted text norm ~1) in the input sum, so the encoder barely saw
        # which items were read: SASRec stalled below popularity.
        nn.init.normal_(self.position.weight, std=0.02)
        self.input_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.encoder == "gru":
            self.gru = nn.GRU(d, d, num_layers=cfg.n_layers, batch_first=True,
                              dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        else:
            layer = nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.transformer = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(d)
        self.text_lags = nn.Parameter(torch.zeros(cfg.text_lags))  # softmax -> a_k, the last item first
        # A learned logit scale started at 1/temperature: a high temperature lets training start
        # from the text path (close to the zero-shot baseline) and grow the sequence part.
        self.seq_scale = nn.Parameter(torch.tensor(-float(np.log(cfg.temperature))))  # log(1/t)
        self.text_scale = nn.Parameter(torch.tensor(10.0))  # alpha: a zero-shot-like start
        self.history_scale = nn.Parameter(torch.tensor(0.0))  # beta
        self.cooc_lags = nn.Parameter(torch.zeros(cfg.text_lags))  # softmax -> c_k
        self.cooc_scale = nn.Parameter(torch.tensor(10.0))  # gamma

    # --- item side ---
    def item_vectors(self, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(n + 1, dim): adapted text + ID embedding for seen items; `id_keep` (n + 1,) float
        zeroes the ID of some items during training (ID dropout) so that the model also learns
        to rank items on text alone, as it must for new ones. Without it (scoring), the ID
        enters with `id_weight`.

        In eval mode, without gradients and `id_keep` (scoring), the result is cached until
        the model goes back to training or a tensor it is computed from changes: the adaptor
        runs over the whole catalog, which was most of a served recommendation's model time."""
        return self._item_side(id_keep)[0]

    def _item_side(self, id_keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(vectors (n + 1, dim), the items' unit vectors (n, dim) for the cosine head or None,
        the items' score offsets (n + 1,)): what every history is scored against. Cached in
        eval mode without gradients and `id_keep`, keyed by the version of every tensor read."""
        if id_keep is not None or self.training or torch.is_grad_enabled():
            return self._compute_item_side(id_keep)
        self.text_neighbours()  # found before the key is taken: finding them changes their buffers
        key = tuple((t.data_ptr(), t._version) for t in self._item_vector_inputs())
        if self._vectors is None or self._vectors[0] != key:
            self._vectors = (key, self._compute_item_side(None))
        return self._vectors[1]

    def _compute_item_side(self, id_keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        vectors = self._item_vectors(id_keep)
        items = None if self.cfg.logits == "dot" else F.normalize(vectors[:-1], dim=-1)  # (n, dim)
        keep = self.id_keep_weights(id_keep)  # (n + 1,)
        # New items (and, in training, items whose ID is hidden) share one learned offset in
        # place of ID, popularity and co-occurrence evidence, which calibrates them against
        # items that have it; ID dropout hides rare items most, as a cold start does new ones.
        bias = self.item_bias * keep + self.new_item_bias * (1 - keep)  # (n + 1,)
        bias = bias + self.new_item_shift * (1 - self.seen)
        borrowed = self.borrowed(self.item_bias, keep)  # (n + 1,) or None
        if borrowed is not None:
            bias = bias + self.borrow_bias * borrowed * (1 - keep)
        return vectors, items, bias

    def train(self, mode: bool = True) -> "UserModel":
        # Fused optimisers update weights without bumping their version, so training mode
        # drops the cache outright (eval mode keeps it: every scoring call sets eval mode);
        # the version key covers edits made in eval mode.
        if mode:
            self._vectors = None
        return super().train(mode)

    def _item_vector_inputs(self) -> list[torch.Tensor]:
        """Every tensor `item_vectors` reads: a load or an in-place edit bumps one's version,
        a move changes its storage."""
        return [*(self.adaptor.parameters() if self.adaptor is not None else ()), self.item_whitened, self.item_text,
                self.seen, self.id_weight, self.borrow_id, self.neighbour_index, self.neighbour_weight,
                self.item_bias, self.new_item_bias, self.new_item_shift, self.borrow_bias,
                *((self.item_id.weight,) if self.item_id is not None else ())]

    def _item_vectors(self, id_keep: torch.Tensor | None) -> torch.Tensor:
        vectors = self.adaptor(self.item_whitened, self.item_text) if self.adaptor is not None else 0.0
        if self.item_id is not None:
            keep = self.id_keep_weights(id_keep)  # (n + 1,)
            vectors = vectors + self.item_id.weight * keep[:, None]
            borrowed = self.borrowed(self.item_id.weight, keep)  # (n + 1, dim) or None
            if borrowed is not None:
                vectors = vectors + self.borrow_id * borrowed * (1 - keep)[:, None]
        return vectors

    # --- sequence side ---
    def states(self, history: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """history: (B, L) item indices, left-padded with `pad`; -> (B, L, dim) states, state t
        having read items 0..t."""
        B, L = history.shape
        is_real = history != self.pad  # (B, L)
        # Positions count from each window's first real item, so a prefix of k items sits at
        # 0..k-1 in training (every position predicts) and at serving time alike.
        position = (torch.arange(L, device=history.device) - (~is_real).sum(1, keepdim=True)).clamp_min(0)  # (B, L)
        x = (vectors[history] + self.position(position)) * is_real.unsqueeze(-1)  # (B, L, dim)
        x = self.dropout(self.input_norm(x))
        if self.cfg.encoder == "gru":
            h, _ = self.gru(x)  # (B, L, dim); left padding only delays the start
        else:
            is_pad = ~is_real  # (B, L)
            blocked = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), 1)  # (L, L) future
            mask = blocked[None] | is_pad[:, None, :]  # (B, L, L)
            mask = mask & ~torch.eye(L, dtype=torch.bool, device=x.device)  # a pad row still sees itself
            mask = mask.repeat_interleave(self.cfg.n_heads, dim=0)  # (B * heads, L, L)
            h = self.transformer(x, mask=mask)  # (B, L, dim)
        return self.output_norm(h)

    def logits(self, history: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               id_keep: torch.Tensor | None = None,
               cooc: CSR | None = None) -> torch.Tensor:
        """Scores of every item at the positions (rows, cols) of `history` (B, L): (P, n_items).
        `cooc`: a co-occurrence C as CSR arrays (indptr, indices, values) that replaces the
        model's own (cross-fitting); its spread to new items goes through the same neighbours."""
        vectors, items, bias = self._item_side(id_keep)  # (n + 1, dim), (n, dim) or None, (n + 1,)
        state = self.states(history, vectors)[rows, cols]  # (P, dim)
        if items is None:  # SASRec's own head: the norm of an ID vector can carry popularity
            out = state @ vectors[:-1].T  # (P, n)
        else:
            out = F.normalize(state, dim=-1) @ items.T * self.seq_scale.exp()  # (P, n)
        keep = self.id_keep_weights(id_keep)  # (n + 1,)
        out = out + bias[:-1]
        if self.cfg.use_text and self.cfg.text_path:
            out = out + self.text_scale * self._recent_text_scores(history, rows, cols)  # (P, n)
        if self.cfg.cooc_path:
            lags, weights = self._lags(history, rows, cols, self.cooc_lags)  # (P, K) each
            cells, values = self._cooc_entries(self.cooccurrence() if cooc is None else cooc, lags, weights, keep)
            # added where C has entries: no (P, n) tensor of its own (at 1M items one is 2 GB)
            out = out.reshape(-1).index_add(0, cells, self.cooc_scale * values).view(out.shape)
        if self.cfg.history_bias:
            out = out + self.history_scale * self._in_history(history, rows, cols)
        return out

    def id_keep_weights(self, id_keep: torch.Tensor | None) -> torch.Tensor:
        """(n + 1,) the weight of each item's ID evidence: training's 0/1 draw `id_keep` on seen
        items, or, scoring (None), `id_weight`."""
        return self.id_weight if id_keep is None else self.seen * id_keep

    def set_id_weight(self, drop: torch.Tensor, share: float) -> None:
        """Scoring's weight of each seen item's ID evidence: 1 - share * drop, where `drop`
        (n + 1,) is the chance that training hid the item's ID. share 0 keeps every seen item's
        ID whole; share 1 scores each item as training saw it on average, the weight-scaling
        rule of dropout (Srivastava et al., 2014). With frequency-aware ID dropout a rare
        item's ID was hidden most of the time, so scoring it with its full, barely trained ID
        vector and popularity asks the model for what it was least trained on."""
        with torch.no_grad():
            self.id_weight.copy_(self.seen * (1 - share * drop.to(self.seen.device)))

    def forward(self, history: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                id_keep: torch.Tensor | None = None,
                cooc: CSR | None = None) -> torch.Tensor:
        """`logits`, as the module's call: training calls the model, or its DDP wrapper,
        which averages gradients only through `forward`."""
        return self.logits(history, rows, cols, id_keep, cooc)

    def _cooc_scores(self, csr: CSR, lags: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(P, n): the co-occurrence path's scores before gamma, see `_cooc_entries`."""
        cells, values = self._cooc_entries(csr, lags, weights, keep)
        flat = torch.zeros(len(lags) * self.cfg.n_items, dtype=values.dtype, device=values.device)
        return flat.index_add(0, cells, values).view(len(lags), self.cfg.n_items)

    def _cooc_entries(self, csr: CSR, lags: torch.Tensor, weights: torch.Tensor,
                      keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k c_k C(h_{t-k}, j) * w_j + sum_k c_k C'(h_{t-k}, j) * (1 - w_j) as entries of
        the flat (P, n) scores: (cell p * n + j, value), each (E,), repeated cells adding up.
        Read from the nonzeros of the K rows of C at each position, never a dense C or C'.

        An item whose ID is hidden is treated as new: no co-occurrence of its own; with
        `new_item_neighbours` it borrows its text neighbours' instead, C'[h, j] = sum_k
        w_jk C[h, k]: each entry (p, k, v) of the C rows read spreads to the items j that
        borrow from k (`spread_table`). (A scale of its own for C' did no better: cold-target
        NDCG@10 0.0315 against 0.0331.)"""
        n = self.cfg.n_items
        position, item, value = lag_entries(csr, lags, weights)  # (E,) each
        cells, values = [position * n + item], [value * keep[item]]
        spread = self.spread_table()
        if spread is not None:
            indptr, borrower, share = spread
            owner, at = csr_gather(indptr, item)  # (E',) each: entry `owner` lends to borrower[at]
            j = borrower[at]
            cells.append(position[owner] * n + j)
            values.append(value[owner] * share[at] * (1 - keep[j]))
        return torch.cat(cells), torch.cat(values)

    def _recent_text_scores(self, history: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(P, n): sum_k a_k cos(e_{t-k}, e_j) over the last K items before each position."""
        lags, weights = self._lags(history, rows, cols, self.text_lags)  # (P, K) each
        similarity = self.text_similarity()
        if similarity is not None:  # gather K rows per position instead of a (P, text_dim, n) matmul
            return torch.einsum("pk,pkn->pn", weights, similarity[lags])  # (P, n)
        recent = (weights[:, :, None] * self.item_text[lags]).sum(dim=1)  # (P, text_dim)
        return recent @ self.item_text[:-1].T  # (P, n)

    def _lags(self, history: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last K items at each position (P, K), the newest first, and their softmax weights
        (P, K), zero for padding."""
        K = len(logits)
        padded = F.pad(history, (K - 1, 0), value=self.pad)  # (B, L + K - 1)
        lags = torch.stack([padded[rows, cols + K - 1 - k] for k in range(K)], dim=1)  # (P, K)
        return lags, torch.softmax(logits, dim=0) * (lags != self.pad)

    def set_cooccurrence(self, matrix) -> None:
        """Stores C (a scipy CSR (n, n) matrix) as three plain arrays in the state dict."""
        self.cooc_indptr, self.cooc_indices, self.cooc_values = csr_tensors(matrix, self.item_text.device)

    def cooccurrence(self) -> CSR:
        """C as CSR arrays (indptr (n + 1,), indices (nnz,), values (nnz,)); the pad has no row."""
        return self.cooc_indptr, self.cooc_indices, self.cooc_values

    def text_neighbours(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`neighbours.text_neighbours` of the catalog, (n + 1, K) each (exact up to
        `neighbours.EXACT_NEIGHBOUR_ITEMS` items, FAISS IVF above); None when off. Found once and
        kept as the buffers `neighbour_index` and `neighbour_weight`: a saved model carries
        them (a model saved without them finds them again on first use)."""
        if self.cfg.new_item_neighbours <= 0:
            return None
        if len(self.neighbour_index) != self.pad + 1:
            self.neighbour_index, self.neighbour_weight = text_neighbours(
                self.item_text, self.seen, self.cfg.new_item_neighbours, self.pad)
            self._spread = None
        return self.neighbour_index, self.neighbour_weight

    def spread_table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """`neighbours.spread_table` of the text neighbours, built once; None when off."""
        neighbours = self.text_neighbours()
        if neighbours is None:
            return None
        if self._spread is None or self._spread[0].device != neighbours[0].device:
            self._spread = spread_table(neighbours)
        return self._spread

    def borrowed(self, values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor | None:
        """`neighbours.borrowed` over the catalog's text neighbours; None when off."""
        neighbours = self.text_neighbours()
        return None if neighbours is None else borrowed(values, keep, neighbours)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The CSR arrays' and the neighbours' shapes depend on the data: take them from the
        # checkpoint. One saved before the neighbours were kept leaves them to be found again.
        for name in ("cooc_indptr", "cooc_indices", "cooc_values", "neighbour_index", "neighbour_weight"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
            elif name.startswith("neighbour_"):
                state_dict[prefix + name] = getattr(self, name).new_zeros(0, 0)
        self._text_sim = self._spread = self._vectors = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def text_similarity(self) -> torch.Tensor | None:
        """(n + 1, n) cosine between items' texts (the pad row zero), computed once, for
        catalogs up to SIM_CACHE_ITEMS items (4 bytes * n^2: 400 MB at 10,000). Only the
        direct text path reads it (a speed-up: above, it multiplies by the texts instead)."""
        if self.cfg.n_items > SIM_CACHE_ITEMS:
            return None
        if self._text_sim is None or self._text_sim.device != self.item_text.device:
            self._text_sim = self.item_text @ self.item_text[:-1].T  # (n + 1, n)
        return self._text_sim

    def _in_history(self, history: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(P, n_items) 1.0 where the item occurs in history[row, :col + 1]."""
        P, L = len(rows), history.shape[1]
        upto = torch.arange(L, device=history.device)[None, :] <= cols[:, None]  # (P, L)
        items = torch.where(upto, history[rows], self.pad)  # (P, L)
        mask = torch.zeros(P, self.cfg.n_items + 1, device=history.device)
        mask.scatter_(1, items, 1.0)
        return mask[:, :-1]

    @torch.no_grad()
    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded histories -> (B, n_items) next-item scores after the last position."""
        B, L = history.shape
        rows = torch.arange(B, device=history.device)
        return self.logits(history, rows, torch.full_like(rows, L - 1))


def pad_left(histories: list[np.ndarray], max_len: int, pad: int) -> torch.Tensor:
    """int64 (B, L): the last `max_len` items of each history, right-aligned; L = the longest kept."""
    L = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.full((len(histories), L), pad, dtype=np.int64)
    for i, h in enumerate(histories):
        tail = h[-L:]
        if len(tail):
            out[i, L - len(tail):] = tail
    return torch.from_numpy(out)


def model_scores(model: UserModel, histories: Histories, batch: int, device: str) -> np.ndarray:
    """float32 (B, n_items) for a batch of histories; empty histories get the popularity prior."""
    if model.training:  # eval() walks every submodule: a tenth of a served recommendation's model time
        model.eval()
    out = []
    for start in range(0, len(histories), batch):
        chunk = pad_left(histories.items[start:start + batch], model.cfg.max_len, model.pad).to(device)  # (b, L)
        out.append(model.scores(chunk).float().cpu().numpy())  # (b, n)
    return np.concatenate(out) if out else np.zeros((0, model.cfg.n_items), dtype=np.float32)
