"""Data-parallel training on Ray Train (`pip install 'shoplm[ray]'`): `TorchTrainer` runs the
in-process training function on N workers (DDP; gloo on CPUs, NCCL on GPUs), each worker
being one `RayReplica` of `shoplm.replica`:

- `train_recommend_job` runs `shoplm.recommend.train.train_and_save`, what `shoplm train recommend`
  runs. Every worker builds the same model and training windows with the same seed, so it
  draws the same batches; it trains on rows rank::world of each batch and DDP averages the
  gradients, so the global batch and the number of steps are those of in-process training.
  Validation cases are split the same way and the metric sums pooled: every worker keeps
  the same best epoch and stops at the same one.
- `train_search_job` runs `shoplm.search.train.train_search`, what `shoplm train search` runs. Each
  worker encodes its share of every batch's queries, positives and hard negatives and
  gathers the others' vectors, so the in-batch softmax still runs over the whole batch.

The driver reads the files and does the model-free work once (split, item text vectors
through the embedding cache, BM25 hard negatives); the workers receive the result with
their config. Rank 0 writes the model directory and reports it as a Ray Train checkpoint;
the driver copies it to `out`: the same directory the in-process command writes, which
`shoplm serve` and `shoplm eval` load. Checkpoints pass through `storage`, which must be
shared (NFS, s3://...) on a cluster of several machines; without it a temporary directory
beside `out` is used and removed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from shoplm.atomic import staged_dir
from shoplm.config import Settings
from shoplm.jobs.batch import _portable, start_ray
from shoplm.progress import Progress, quiet
from shoplm.replica import Replica


class RayReplica(Replica):
    """A Ray Train worker inside the torch.distributed group that TorchTrainer set up."""

    def __init__(self):
        import ray.train
        from ray.train.torch import get_device

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = get_device()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from ray.train.torch import prepare_model

        # find_unused_parameters: some parameters may stay out of the loss (the encoder's BERT
        # pooler, a path of the recommendation model that is switched off). Buffers never change
        # in training, so they are synced once at the start and not before every step.
        return prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True,
                                                              "forward_sync_buffers": False})

    def shard(self, rows: np.ndarray) -> np.ndarray:
        return rows[self.rank::self.world]

    def all_sum(self, values: list[float]) -> np.ndarray:
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.cpu().numpy()

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
        sizes = [int(size) for size in sizes]
        most = max(sizes)
        if most == 0:
            return x
        padded = torch.cat([x, x.new_zeros((most - len(x), *x.shape[1:]))])  # all_gather needs equal shapes
        gathered = _GatherWithGrad.apply(padded)  # (world * most, ...)
        return torch.cat([gathered[r * most:r * most + size] for r, size in enumerate(sizes)])

    def shared_generator(self, seed: int, device: str) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each replica the sum over replicas of the gradient of
    its rows: every replica's loss reads every replica's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        rows = len(grad) // dist.get_world_size()
        return grad[dist.get_rank() * rows:(dist.get_rank() + 1) * rows]


# --- recommendation ------------------------------------------------------------------------

def train_recommend_job(settings: Settings, items: Path, events: Path, out: Path, workers: int = 2,
                        address: str | None = None, cold: float = 0.0, storage: str | None = None) -> dict:
    """Train the shoplm recommendation model on `workers` Ray Train workers and write `out` as
    `shoplm train recommend --cold-items cold` does. Returns rank 0's summary (epochs,
    best_epoch, valid_ndcg@10, gpu)."""
    from shoplm.recommend.evaluate import prepare

    started = time.perf_counter()
    item_ids, split, _, vectors, _ = prepare(settings, items, events, cold)
    config = {"settings": _portable(settings), "data": (item_ids, split, vectors), "cold": cold,
              "seconds_before": time.perf_counter() - started, "threads": settings.recommend_threads}
    return _fit(_recommend_worker, config, out, workers, address, storage, settings, "recommend")


def _recommend_worker(config: dict) -> None:
    from shoplm.recommend.train import best_epoch, train_and_save

    torch.set_num_threads(config["threads"])
    replica = RayReplica()
    settings = Settings(**config["settings"]).model_copy(update={"device": str(replica.device)})
    item_ids, split, vectors = config["data"]
    with tempfile.TemporaryDirectory() as tmp:
        log = train_and_save(settings, item_ids, split, vectors, config["cold"], Path(tmp) / "model",
                             replica=replica, seconds_before=config["seconds_before"])
        best = best_epoch(log)
        _report({"epochs": len(log), "best_epoch": best.get("epoch"), "valid_ndcg@10": best.get("valid_ndcg@10")},
                replica, Path(tmp) / "model")


# --- search --------------------------------------------------------------------------------

def train_search_job(settings: Settings, items: Path, judgments: Path | None, events: Path | None, out: Path,
                     cfg, base_model: Path | None = None, workers: int = 2, address: str | None = None,
                     storage: str | None = None, progress: Progress = quiet) -> dict:
    """Fine-tune the search encoder on `workers` Ray Train workers and write `out` as
    `shoplm train search` does (`cfg`: a `SearchTrainConfig`). Returns rank 0's summary
    (steps, best_step, best_dev_ndcg@10, gpu) and, when one was trained here, the re-ranker's."""
    from shoplm.search.rerank_train import fit_reranker
    from shoplm.search.train import RANKER_MIN_QUERIES, training_inputs

    inputs = training_inputs(settings, items, judgments, events, cfg, progress)
    progress("fine-tune on Ray", 0, None)
    config = {"inputs": inputs._replace(lexical=None), "cfg": cfg, "threads": settings.torch_threads or 1,
              "language": settings.language, "base_model": base_model or settings.encoder_model}
    summary = _fit(_search_worker, config, out, workers, address, storage, settings, "search")
    if len(inputs.ranker_qrels) >= RANKER_MIN_QUERIES:  # on the driver, as `shoplm train search` does after fine-tuning
        summary["ranker"] = fit_reranker(settings, inputs, Path(out), cfg.seed, progress)
    return summary


def _search_worker(config: dict) -> None:
    from shoplm.search.lexical import LexicalIndex
    from shoplm.search.train import train_search

    torch.set_num_threads(config["threads"])
    replica = RayReplica()
    texts, pairs, dev_qrels, negatives = config["inputs"][:4]
    lexical = LexicalIndex(list(texts), list(texts.values()), language=config["language"])  # rebuilt here: the BM25 stemmer does not pickle
    cfg = replace(config["cfg"], device=str(replica.device))
    with tempfile.TemporaryDirectory() as tmp:
        result = train_search(texts, pairs, dev_qrels, negatives, lexical, Path(tmp) / "model", cfg,
                              config["base_model"], replica=replica)
        _report({"steps": result.steps, "best_step": result.best_step, "best_dev_ndcg@10": result.best_dev_ndcg},
                replica, Path(tmp) / "model")


# --- shared --------------------------------------------------------------------------------

def _report(metrics: dict, replica: RayReplica, model_dir: Path) -> None:
    """Every worker reports (a barrier); rank 0 with its model directory as the checkpoint."""
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(model_dir)) if replica.is_main else None
    ray.train.report({**metrics, "gpu": replica.device.type == "cuda"}, checkpoint=checkpoint)


def _fit(worker: Callable[[dict], None], config: dict, out: Path, workers: int, address: str | None,
         storage: str | None, settings: Settings, what: str) -> dict:
    """Run `worker` on a TorchTrainer of `workers` workers; copy the checkpoint to `out`."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    start_ray(address, num_cpus=None if address else workers * config["threads"])
    # GPUs when the cluster has one per worker (and the settings do not ask for the CPU).
    use_gpu = settings.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= workers
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = None if storage else tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.ray-")
    storage_path = storage if storage and "://" in storage else str(Path(storage or scratch).resolve())
    name = f"shoplm-train-{what}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    try:
        trainer = TorchTrainer(
            worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": config["threads"]}),
            run_config=RunConfig(name=name, storage_path=storage_path))
        result = trainer.fit()
        with result.checkpoint.as_directory() as directory, staged_dir(out) as tmp:
            shutil.copytree(directory, tmp, dirs_exist_ok=True)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return dict(result.metrics)
