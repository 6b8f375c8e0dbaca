"""`shoplm jobs train` on a local Ray with 2 CPUs trains like one process: 2 workers reach the
in-process validation NDCG@10 within 5% with the same seed and steps (dropout on); with
dropout off, where the two must take the same steps, their per-step losses agree to float
precision, a batch with fewer rows than workers included. The job's output is the directory
the in-process command writes, and it loads and scores."""

from __future__ import annotations

import csv
import json
import random
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.config import Settings
from shoplm.lm.encoder import Encoder, default_model_dir

import ray  # noqa: E402, F401 - the ray extra; make test installs it, so a missing Ray fails here instead of skipping

runner = CliRunner()
BRANDS = ["Bosch", "Makita", "Stanley", "Gorilla", "Philips", "Pyrex"]


@pytest.fixture(scope="module")
def local_ray():
    from shoplm.jobs.batch import start_ray

    start_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- recommendation ------------------------------------------------------------------------

LINES = ["drill bit", "saw blade", "sanding disc", "wood glue", "multimeter probe", "glass beaker", "tape measure",
         "light bulb"]
SIZES = ["5 mm", "8 mm", "10 mm", "12 mm", "16 mm", "20 mm"]


@pytest.fixture(scope="module")
def sequential_shop(tmp_path_factory):
    """48 items (8 product lines x 6 sizes) and 400 buyers, each moving to the next line with
    the same size (70%) or a random one: a pattern that the untrained model, reading text and
    co-occurrence, only half finds."""
    directory = tmp_path_factory.mktemp("shop")
    rng = random.Random(3)
    with open(directory / "items.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "brand", "price"])
        for line, kind in enumerate(LINES):
            for size, label in enumerate(SIZES):
                brand = BRANDS[line % len(BRANDS)]
                writer.writerow([f"L{line}S{size}", f"{brand} {kind} {label}", brand, 5 + size])
    with open(directory / "events.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "user_id", "event_type", "item_id"])
        for actor in range(400):
            line, size = rng.randrange(len(LINES)), rng.randrange(len(SIZES))
            for step in range(rng.randint(5, 10)):
                writer.writerow([1_700_000_000 + 1000 * actor + 60 * step, f"u{actor}", "purchase", f"L{line}S{size}"])
                line = (line + 1) % len(LINES)
                if rng.random() < 0.3:
                    size = rng.randrange(len(SIZES))
    return directory / "items.csv", directory / "events.csv", directory / "cache"


def _recommend_env(monkeypatch, cache, **extra) -> Settings:
    """A small model via the environment, as a user sets it; batch 68 leaves one fold a last
    batch of a single window (checked in the dropout-off test)."""
    env = {"EMBEDDING_CACHE_DIR": str(cache), "RECOMMEND_DIM": "32", "RECOMMEND_LAYERS": "1",
           "RECOMMEND_MAX_LEN": "10", "RECOMMEND_BATCH_SIZE": "68", "RECOMMEND_LR": "0.01",
           "RECOMMEND_PATIENCE": "50", **extra}
    for name, value in env.items():
        monkeypatch.setenv(f"SHOPLM_{name}", value)
    return Settings()


def _train_both(items, events, tmp_path) -> tuple:
    """`shoplm train recommend` and `shoplm jobs train recommend --workers 2` on the same files."""
    for command in (["train", "recommend"], ["jobs", "train", "recommend", "--workers", "2"]):
        out = tmp_path / command[0]
        result = runner.invoke(app, [*command, "--items", str(items), "--events", str(events), "--out", str(out)])
        assert result.exit_code == 0, result.output
    return tmp_path / "train", tmp_path / "jobs"


def test_two_workers_reach_the_in_process_validation_ndcg(local_ray, sequential_shop, tmp_path, monkeypatch):
    from shoplm.recommend.evaluate import prepare
    from shoplm.recommend.checkpoint import load_model
    from shoplm.recommend.train import TrainedUserModel, evaluate, model_config, train_config
    from shoplm.recommend.recommender import FitData

    items, events, cache = sequential_shop
    settings = _recommend_env(monkeypatch, cache, RECOMMEND_EPOCHS="30")
    one, two = _train_both(items, events, tmp_path)
    item_ids, split, _, vectors, _ = prepare(settings, items, events)

    def valid_ndcg(directory) -> float:
        model, ids, _ = load_model(directory, "cpu")
        assert ids == item_ids
        return evaluate(model, split.valid.histories, split.valid.targets, 1024, "cpu")["ndcg@10"]

    untrained = TrainedUserModel("untrained", lambda n, d: model_config(settings, n, d),
                                 train_config(settings, epochs=0), "cpu")
    untrained.fit(FitData(split.train, split.valid, vectors))
    before = evaluate(untrained.model, split.valid.histories, split.valid.targets, 1024, "cpu")["ndcg@10"]
    random_ranking = sum(1 / np.log2(rank + 1) for rank in range(1, 11)) / len(item_ids)  # expected NDCG@10
    single, distributed = valid_ndcg(one), valid_ndcg(two)
    # the comparison means something: training took the model far from where it started
    assert single > 5 * random_ranking and single > before + 0.3, (single, before, random_ranking)
    assert abs(distributed - single) <= 0.05 * single, (distributed, single)
    # interchangeable outputs: the same files and parameters, and the job's model scores
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    params = [json.loads((d / "params.json").read_text()) for d in (one, two)]
    for name in ("model", "train", "training_fingerprint", "event_weights"):
        assert params[0][name] == params[1][name], name
    assert len(json.loads((two / "train_log.json").read_text())) == 30
    model, _, _ = load_model(two, "cpu")
    scores = model.scores(torch.tensor([[0, 6, 12]]))  # L0S0, L1S0, L2S0: next is L3S0 (index 18)
    assert scores.shape == (1, 48) and torch.isfinite(scores).all() and int(scores.argmax()) == 18
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # Ray's checkpoint storage is gone


def test_without_dropout_two_workers_take_the_in_process_steps(local_ray, sequential_shop, tmp_path, monkeypatch):
    from shoplm.recommend.evaluate import prepare
    from shoplm.recommend.train import fold_batches, model_config, train_config, training_set
    from shoplm.recommend.sequences import item_frequency
    from shoplm.recommend.model import UserModel

    items, events, cache = sequential_shop
    settings = _recommend_env(monkeypatch, cache, RECOMMEND_EPOCHS="4", RECOMMEND_DROPOUT="0",
                              RECOMMEND_ID_DROPOUT="0", RECOMMEND_ID_DROPOUT_RARE="0")
    item_ids, split, _, vectors, _ = prepare(settings, items, events)
    model = UserModel(model_config(settings, len(item_ids), vectors.shape[1]), torch.from_numpy(vectors),
                      torch.from_numpy(item_frequency(split.train, len(item_ids)) > 0))
    data = training_set(model, split.train, train_config(settings), "cpu")
    batches = fold_batches(data.lengths, data.folds, settings.recommend_batch_size, np.random.default_rng(0))
    assert min(len(batch) for _, batch in batches) == 1  # the second worker gets no row of that batch
    one, two = _train_both(items, events, tmp_path)
    logs = [json.loads((d / "train_log.json").read_text()) for d in (one, two)]
    assert len(logs[0]) == len(logs[1]) == 4
    for single, distributed in zip(*logs):
        assert distributed["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert distributed["valid_ndcg@10"] == pytest.approx(single["valid_ndcg@10"], abs=1e-6)


# --- search --------------------------------------------------------------------------------

KINDS = [("drill bit", "Bohrer"), ("saw blade", "Saegeblatt"), ("wood glue", "Holzleim"),
         ("light bulb", "Gluehbirne"), ("tape measure", "Massband"), ("paint roller", "Farbroller"),
         ("screwdriver", "Schraubendreher"), ("hammer", "Hammer")]


@pytest.fixture(scope="module")
def german_queries(tmp_path_factory):
    """144 items with English titles, one judged German query each ("Bohrer small von Bosch"
    -> "Bosch drill bit small"): the base model reads brand and size but few of the German
    words, which fine-tuning learns from the training queries and carries to the dev ones."""
    directory = tmp_path_factory.mktemp("search")
    with open(directory / "items.csv", "w", newline="") as items, \
            open(directory / "judgments.csv", "w", newline="") as judgments:
        item_rows, judgment_rows = csv.writer(items), csv.writer(judgments)
        item_rows.writerow(["item_id", "title", "brand", "price"])
        judgment_rows.writerow(["query", "item_id", "relevance"])
        for b, brand in enumerate(BRANDS):
            for k, (english, german) in enumerate(KINDS):
                for s, size in enumerate(["small", "medium", "large"]):
                    item_rows.writerow([f"B{b}K{k}S{s}", f"{brand} {english} {size}", brand, 5 + s])
                    judgment_rows.writerow([f"{german} {size} von {brand}", f"B{b}K{k}S{s}", 2])
    return directory / "items.csv", directory / "judgments.csv"


def _fine_tune_both(items, judgments, tmp_path, cfg, base_model=None) -> tuple[dict, dict]:
    """`run_training` (what `shoplm train search` runs) and the 2-worker job, same settings and config;
    their shoplm_train.json summaries."""
    from shoplm.jobs.train import train_search_job
    from shoplm.search.train import run_training

    # no re-ranker hold-out: these tests compare the fine-tuning loops on every train query
    settings = Settings(search_dev_fraction=0.3, search_ranker_fraction=0, encoder_bf16=False, torch_threads=1)
    run_training(settings, items, judgments, None, tmp_path / "one", cfg, base_model)
    summary = train_search_job(settings, items, judgments, None, tmp_path / "two", cfg, base_model, workers=2)
    assert summary["gpu"] is False and summary["steps"] >= 1
    return tuple(json.loads((tmp_path / d / "shoplm_train.json").read_text()) for d in ("one", "two"))


def test_two_workers_fine_tune_search_like_one_process(local_ray, german_queries, tmp_path):
    from shoplm.search.train import SearchTrainConfig

    items, judgments = german_queries
    cfg = SearchTrainConfig(batch_size=16, epochs=2, eval_every=4, patience=10, seed=1, device="cpu", bf16=False)
    one, two = _fine_tune_both(items, judgments, tmp_path, cfg)
    assert one["steps"] == two["steps"] == 12
    base = one["history"][0]["dev_ndcg@10"]
    assert two["history"][0]["dev_ndcg@10"] == pytest.approx(base)  # the same dev pool and base model
    assert one["best_dev_ndcg"] > base + 0.3, (one["best_dev_ndcg"], base)  # fine-tuning matters here
    assert abs(two["best_dev_ndcg"] - one["best_dev_ndcg"]) <= 0.05 * one["best_dev_ndcg"], (two, one)
    vectors = Encoder(tmp_path / "two", bf16=False).encode(["Bohrer small von Bosch", "Bosch drill bit small"])
    assert vectors.shape == (2, 384) and float(vectors[0] @ vectors[1]) > 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_without_dropout_the_gathered_softmax_takes_the_in_process_steps(local_ray, german_queries, tmp_path):
    """Each worker encodes half of every batch; the losses match only if every worker's softmax
    sees the whole batch's negatives and the gradients come back to the rows' owners."""
    from shoplm.search.train import SearchTrainConfig, make_batches, training_inputs

    items, judgments = german_queries
    base = tmp_path / "base"
    shutil.copytree(default_model_dir(), base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0,
                                                   "attention_probs_dropout_prob": 0.0}))
    cfg = SearchTrainConfig(batch_size=15, epochs=1, eval_every=1, patience=10, seed=1, device="cpu", bf16=False)
    inputs = training_inputs(Settings(search_dev_fraction=0.3, search_ranker_fraction=0), items, judgments, None, cfg)
    rng = random.Random(cfg.seed)
    rng.sample(sorted(inputs.dev_qrels), len(inputs.dev_qrels))  # as train_search draws its dev queries first
    sizes = [len(batch.queries) for batch in make_batches(inputs.train_pairs, inputs.negatives, inputs.texts, 15, rng)]
    assert sizes[-1] == 1, sizes  # the last step leaves the second worker without a query
    one, two = _fine_tune_both(items, judgments, tmp_path, cfg, base)
    assert len(one["history"]) == len(two["history"]) == len(sizes) + 1
    for single, distributed in zip(one["history"][1:], two["history"][1:]):
        assert distributed["loss"] == pytest.approx(single["loss"], rel=1e-4, abs=1e-6)
        assert distributed["dev_ndcg@10"] == pytest.approx(single["dev_ndcg@10"], abs=1e-6)


def test_help_has_examples():
    for command in ("recommend", "search"):
        result = runner.invoke(app, ["jobs", "train", command, "--help"])
        assert result.exit_code == 0 and "Example" in result.stdout
