"""The fast CPU path of the encoder: the same sentence-transformers model, exported to ONNX
and quantised to int8 (dynamic quantisation, per-channel weights of the MatMuls), run by
ONNX Runtime. Selected by `SHOPLM_ENCODER_BACKEND=onnx-int8`; `shoplm.lm.encoder.Encoder`
keeps its interface either way.

Why by hand: sentence-transformers' own ONNX backend goes through optimum, which pins an
older transformers than this project's. What is left is small: `torch.onnx.export` of the
model's transformer, `onnxruntime.quantization.quantize_dynamic`, and the pooling (mean or
CLS, then L2 normalisation) in numpy. Per-channel int8 of the MatMuls only keeps cosine
to the fp32 vectors at about 0.99 on Home Depot titles; per-tensor int8 of every op fell
to 0.96. The quantised file is built once per model fingerprint and cached.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.atomic import staged_dir
from shoplm.errors import ConfigError


def quantized_model(st_model, fingerprint: str, cache_dir: Path) -> Path:
    """`cache_dir/<fingerprint>/model-int8.onnx`, exported and quantised on first use."""
    target = Path(cache_dir) / fingerprint
    path = target / "model-int8.onnx"
    if path.is_file():
        return path
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    transformer = st_model[0].auto_model.eval()
    names = list(st_model.tokenizer(["a b"], return_tensors="pt").keys())

    class Hidden(torch.nn.Module):  # positional inputs in, the last hidden state out
        def __init__(self):
            super().__init__()
            self.model = transformer

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    sample = st_model.tokenizer(["a cordless drill", "glue"], padding=True, return_tensors="pt")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
    try:
        with staged_dir(target) as tmp, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on traced index ops (the tests check the output)
            torch.onnx.export(Hidden(), tuple(sample[n] for n in names), str(tmp / "model.onnx"), input_names=names,
                              output_names=["hidden"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]})
            quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model-int8.onnx"), weight_type=QuantType.QInt8,
                             per_channel=True, op_types_to_quantize=["MatMul"])
            (tmp / "model.onnx").unlink()
            (tmp / "inputs.json").write_text(json.dumps(names))
    finally:
        root.setLevel(level)
    return path


class OnnxRunner:
    """Tokenise, run the int8 transformer, pool, normalise: float32[n, dim]."""

    def __init__(self, st_model, onnx_path: Path, threads: int | None = None):
        import onnxruntime as ort

        pooling = st_model[1].get_config_dict().get("pooling_mode", "mean") if len(st_model) > 1 else "mean"
        pooling = pooling[0] if isinstance(pooling, (list, tuple)) and len(pooling) == 1 else pooling
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"the onnx-int8 encoder backend supports mean or CLS pooling, this model pools by "
                              f"{pooling!r}; use SHOPLM_ENCODER_BACKEND=torch for it")
        self.pooling = pooling
        self.tokenizer = st_model.tokenizer
        self.max_length = st_model.max_seq_length
        self.names = json.loads((Path(onnx_path).parent / "inputs.json").read_text())
        # One thread per run, and `workers` runs at once: BERT-small matmuls split badly across
        # threads (2 intra-op threads gave 1.5x one on 2 cores), whole batches in parallel scale
        # better; and a single query is fastest on one thread (about 1 ms against 1.8 ms).
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.workers = threads or max(1, (os.cpu_count() or 1))
        # Small batches: on 2 cores, Home Depot titles ran at 731 items/s in batches of 16,
        # 688 of 32, 619 of 64 and 517 of 128 (less padding, and the activations stay in cache).
        self.batch_size = 16
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def map(self, batches: Sequence[Sequence[str]], run=None) -> list:
        """`run(batch)` (default `self(batch)`) for every batch, `workers` at a time (ONNX Runtime
        runs release the GIL)."""
        run = run or self
        if self.workers == 1 or len(batches) == 1:
            return [run(batch) for batch in batches]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="shoplm-onnx") as pool:
            return list(pool.map(run, batches))

    def _hidden(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the last hidden state (b, t, dim), the attention mask (b, t), the pooled, L2-normalised
        vectors (b, dim) float32)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="np")
        hidden = self.session.run(None, {n: tokens[n].astype(np.int64) for n in self.names})[0]  # (b, t, dim)
        attention = tokens["attention_mask"]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention[..., None].astype(np.float32)  # (b, t, 1)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)  # (b, dim)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return hidden, attention, (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self._hidden(texts)[2]

    def with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(pooled vectors (b, dim) float32, each text's float16 (t_i, dim) L2-normalised token
        vectors without [CLS] and [SEP]) from one run: `Encoder.encode_tokens` on this backend."""
        hidden, attention, pooled = self._hidden(texts)
        words = hidden / np.maximum(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-12)  # (b, t, dim)
        lengths = attention.sum(axis=1)
        return pooled, [words[j, 1:max(int(lengths[j]) - 1, 1)].astype(np.float16) for j in range(len(texts))]
