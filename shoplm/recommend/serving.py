"""The trained user model in its serving form: one history at a time, on a CPU.

`UserModel.scores` is written for batches in training: every request re-derives the
lags, the causal mask and the sparse paths' entries through some two hundred small torch
ops, most of the 1.7 ms a served recommendation spent in the model. For one visitor
everything that does not depend on the history is fixed once the model is loaded: the
items' unit vectors and offsets, the softmaxed lag weights, the co-occurrence C (its CSR
arrays) and its spread to ID-less items (a scipy CSR matrix). What is left per request:

    state  = encoder(v[h_1..h_L])                    # ONNX Runtime: the sequence encoder only
    s      = scale * items @ unit(state) + bias      # the head (n, dim) @ (dim,)
           + alpha * a @ S_text[lags]                 # direct text path (K rows)
           + gamma * (c @ C[lags]) * w                # co-occurrence, seen items
           + gamma * spread(c @ C[lags]) * (1 - w)    # ... lent to ID-less items
           + beta * [j in history]

the same terms as `UserModel.logits` (shoplm/recommend/model.py), in float32;
tests/recommend/test_serving.py holds the two to 1e-4 on every configuration. The encoder
(position embeddings, input norm, the causal Transformer or GRU, output norm) is exported
from the loaded torch module to ONNX in memory at load (about a second) and run by ONNX
Runtime, already a dependency for the int8 text encoder, in a tenth of torch's time for
a history of ten items.

    form = ServingModel(model, threads=1)
    scores = form.scores(np.array([12, 7, 7, 40]))  # float32 (n_items,)
"""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional as F

from shoplm.recommend.model import UserModel


class _LastState(nn.Module):
    """`UserModel.states` for one unpadded history of item vectors (1, L, dim) -> its last
    state (1, dim); no padding, so the mask is the causal one alone. The Transformer's
    layers are spelt out in plain tensor ops (pre-norm, GELU, as `UserModel` builds them):
    `nn.MultiheadAttention` exports to ONNX with the length of the tracing example fixed
    in its reshapes, and torch.export refuses its size checks."""

    def __init__(self, model: UserModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        L = x.shape[1]
        x = m.input_norm(x + m.position.weight[:L].unsqueeze(0))  # dropout is off in eval mode
        if m.cfg.encoder == "gru":
            return m.output_norm(m.gru(x)[0][:, -1])
        blocked = torch.triu(torch.full((L, L), float("-inf"), device=x.device), 1)  # (L, L) the future
        for layer in m.transformer.layers:
            x = x + self._attention(layer.self_attn, layer.norm1(x), blocked)
            x = x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))
        return m.output_norm(x[:, -1])

    @staticmethod
    def _attention(attn: nn.MultiheadAttention, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        heads = attn.num_heads
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # (1, L, dim) each
        q, k, v = (t.reshape(1, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))  # (1, H, L, d)
        weights = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5) + blocked, dim=-1)  # (1, H, L, L)
        return attn.out_proj((weights @ v).transpose(1, 2).reshape(1, -1, x.shape[-1]))


_EXPORTING = threading.Lock()  # torch's exporter keeps a process-wide flag: two reloads at once fail


def _export(module: nn.Module, dim: int) -> bytes:
    """The ONNX file of `module` with a dynamic history length, in memory."""
    buffer = io.BytesIO()
    with _EXPORTING, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes read from tensors (the tests check the output)
        torch.onnx.export(module, (torch.zeros(1, 3, dim),), buffer, input_names=["x"], output_names=["state"],
                          opset_version=17, dynamo=False, dynamic_axes={"x": {1: "length"}})
    return buffer.getvalue()


class ServingModel:
    """A loaded `UserModel`'s (on the CPU) scores for one history at a time, see the module
    docstring. Shares the model's arrays where it can (the text cosines, C); holds its own
    float32 item side (n x dim, like the model's cache)."""

    def __init__(self, model: UserModel, threads: int = 1):
        import onnxruntime as ort

        model.eval()
        cfg = self.cfg = model.cfg
        self.n, self.pad, self.max_len = cfg.n_items, model.pad, cfg.max_len
        with torch.no_grad():
            vectors, items, bias = model._item_side(None)  # the model's own item side
            self.vectors = vectors.numpy().astype(np.float32, copy=False)  # (n + 1, dim) encoder inputs
            self.items = None if items is None else items.numpy().astype(np.float32, copy=False)  # (n, dim)
            self.bias = bias[:-1].numpy().astype(np.float32, copy=False)  # (n,)
            self.seq_scale = float(model.seq_scale.exp())
            keep = model.id_keep_weights(None)[:-1].numpy().astype(np.float32)  # (n,) w_j
            self.text_sim = self.item_text = None
            if cfg.use_text and cfg.text_path:
                self.text_lags = torch.softmax(model.text_lags, 0).numpy()  # (K,) a_k, the newest first
                self.text_scale = float(model.text_scale)
                sim = model.text_similarity()
                if sim is not None:
                    self.text_sim = sim.numpy()  # (n + 1, n), the pad row zero
                else:
                    self.item_text = model.item_text.numpy()  # (n + 1, text_dim)
            self.cooc = None
            if cfg.cooc_path:
                self.cooc = tuple(t.numpy() for t in model.cooccurrence())  # C: indptr, indices, values
                self.cooc_lags = torch.softmax(model.cooc_lags, 0).numpy()  # (K,) c_k
                self.cooc_scale = float(model.cooc_scale)
                self.keep = keep
                spread = model.spread_table()
                self.spread = None
                if spread is not None:  # S[k, j]: the share of k's co-occurrence that j borrows
                    indptr, borrower, share = (t.numpy() for t in spread)
                    self.spread = sparse.csr_matrix((share, borrower, indptr), shape=(self.n, self.n)).T.tocsr()
                    self.lent = 1.0 - keep  # (n,) 1 - w_j
            self.history_scale = float(model.history_scale) if cfg.history_bias else 0.0
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(_export(_LastState(model).eval(), cfg.dim), options,
                                            providers=["CPUExecutionProvider"])

    def _lags(self, history: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last K real items, the newest first, and their softmax weights (`UserModel._lags`
        without the padding: those weights are zero there)."""
        lags = history[::-1][: len(weights)]
        return lags, weights[: len(lags)]

    def scores(self, history: np.ndarray) -> np.ndarray:
        """float32 (n_items,): the next-item scores after `history` (model item indices, oldest
        first, at least one), as `UserModel.scores` of it left-padded."""
        history = np.asarray(history, dtype=np.int64)[-self.max_len:]
        x = self.vectors[history][None]  # (1, L, dim)
        state = self.session.run(None, {"x": x})[0][0]  # (dim,)
        if self.items is None:  # "dot": SASRec's own head
            out = self.vectors[:-1] @ state
        else:
            out = self.items @ (state / max(float(np.linalg.norm(state)), 1e-12)) * self.seq_scale
        out += self.bias
        if self.text_sim is not None or self.item_text is not None:
            lags, a = self._lags(history, self.text_lags)
            if self.text_sim is not None:
                out += self.text_scale * (a @ self.text_sim[lags])
            else:
                out += self.text_scale * (self.item_text[:-1] @ (a @ self.item_text[lags]))
        if self.cooc is not None:
            lags, c = self._lags(history, self.cooc_lags)
            indptr, indices, values = self.cooc
            runs = [slice(indptr[i], indptr[i + 1]) for i in lags.tolist()]  # scipy's row indexing took 4x as long
            row = np.bincount(np.concatenate([indices[r] for r in runs]),
                              np.concatenate([values[r] * w for r, w in zip(runs, c.tolist())]),
                              minlength=self.n).astype(np.float32)  # (n,) sum_k c_k C(h_{t-k}, j)
            cooc = row * self.keep
            if self.spread is not None:
                cooc += (self.spread @ row) * self.lent
            out += self.cooc_scale * cooc
        if self.history_scale:
            out[np.unique(history)] += self.history_scale
        return out
