"""The int8 ONNX encoder backend gives (nearly) the torch encoder's vectors, ranks like it,
is built once per model and cached, and is refused for what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.config import Settings
from shoplm.lm.encoder import Encoder
from shoplm.errors import ConfigError

TEXTS = ["Cordless drill 18V with two batteries", "Hammer drill 750W corded", "Drill bit set for wood and metal",
         "Hand saw for wood, 500 mm", "Circular saw 1200W", "Wood glue, waterproof, 250 ml", "Super glue gel 20 g",
         "Duct tape silver 50 m", "Sandpaper assortment 120-240 grit", "Random orbit sander 300W",
         "LED work light with magnetic base", "Extension cord 10 m, 3 sockets", "Safety goggles, anti-fog",
         "A long description: " + "this product is sturdy and reliable for everyday work in the workshop. " * 8]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    return Encoder(), Encoder(backend="onnx-int8", onnx_cache_dir=cache), cache


def test_int8_vectors_are_close_to_the_torch_ones(encoders):
    base, fast, _ = encoders
    cosine = (base.encode(TEXTS) * fast.encode(TEXTS)).sum(axis=1)  # both L2-normalised
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.985, cosine
    assert fast.fingerprint != base.fingerprint  # never mixed in one embedding cache


def test_int8_ranks_like_torch(encoders):
    base, fast, _ = encoders
    for query in ("drill for metal", "glue", "saw for cutting wood", "protect my eyes"):
        top_base = np.argsort(-(base.encode(TEXTS) @ base.encode_query(query)))[:3]
        top_fast = np.argsort(-(fast.encode(TEXTS) @ fast.encode_query(query)))[:3]
        assert top_base[0] == top_fast[0] and len(set(top_base) & set(top_fast)) >= 2, query


def test_query_path_equals_batch_path(encoders):
    _, fast, _ = encoders
    np.testing.assert_allclose(fast.encode_query(TEXTS[0]), fast.encode([TEXTS[0]])[0], atol=1e-5)


def test_int8_token_vectors_are_the_torch_ones_from_one_run(encoders):
    """The re-ranker's MaxSim inputs under the int8 backend: the pooled vector as `encode`
    gives it and, per text, as many unit token vectors as the torch path (no [CLS], [SEP]),
    each close to the torch one."""
    base, fast, _ = encoders
    want_pooled, want_tokens = base.encode_tokens(TEXTS)
    pooled, tokens = fast.encode_tokens(TEXTS)
    np.testing.assert_allclose(pooled, fast.encode(TEXTS), atol=1e-5)
    assert (pooled * want_pooled).sum(axis=1).min() >= 0.97
    for got, want in zip(tokens, want_tokens):
        assert got.dtype == np.float16 and got.shape == want.shape
        np.testing.assert_allclose(np.linalg.norm(got.astype(np.float32), axis=1), 1.0, atol=2e-3)
        cosine = (got.astype(np.float32) * want.astype(np.float32)).sum(axis=1)
        assert cosine.min() >= 0.9 and cosine.mean() >= 0.97, cosine


def test_the_export_is_cached(encoders):
    _, fast, cache = encoders
    (onnx_file,) = cache.glob("*/model-int8.onnx")
    stamp = onnx_file.stat().st_mtime_ns
    again = Encoder.from_settings(Settings(encoder_backend="onnx-int8", onnx_cache_dir=cache))
    assert again.fingerprint == fast.fingerprint and onnx_file.stat().st_mtime_ns == stamp


def test_an_unknown_backend_is_refused():
    with pytest.raises(ConfigError, match="onnx-int8"):
        Encoder(backend="tensorrt")


def test_threads_follow_the_cores_busy_now(monkeypatch):
    """Unset, torch threads are the cores other processes leave free, sampled from /proc/stat
    (the load average lags a finished job by a minute); without /proc/stat, the load average."""
    import shoplm.device as device

    monkeypatch.setattr(device.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(device.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    samples = iter([(1000, 500), (1100, 550)])  # half of all CPU time busy: 2 of 4 cores
    monkeypatch.setattr(device, "_cpu_times", lambda: next(samples))
    assert device.pick_threads() == 2
    samples = iter([(1000, 500), (1100, 600)])  # all idle, though the load average says 3
    assert device.pick_threads() == 4
    assert device.pick_threads(3) == 3  # asked for: taken as is
    monkeypatch.setattr(device, "_cpu_times", lambda: None)
    assert device.pick_threads() == 1  # 4 - load 3
