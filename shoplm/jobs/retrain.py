"""`shoplm jobs retrain`: a candidate recommendation model trained on the store's events up to
now, compared with the serving model on the same hold-out, promoted only if it is not worse.

    result = retrain(settings, store, serving="recommend-20261124", margin=0.01,
                     reload_urls=["http://10.0.0.5:8000"])
    result.promoted, result.report                   # bool, <models_dir>/<name>/retrain/report.md

1. **Snapshot**: the store's catalog and every event with a timestamp up to the start of the
   run. An event that names an item no longer in the catalog is left out and counted.
2. **Candidate**: what `shoplm train recommend` does, on that snapshot: each actor's
   second-last item event picks the epoch and the last is held out. It is written to
   `SHOPLM_MODELS_DIR/<name>` (default `recommend-<UTC time>`).
3. **Hold-out**: each actor's latest item event, ranked over the whole catalog after the
   events before it (the protocol of `shoplm eval recommend`). The serving model has not
   trained on these targets if it was trained by shoplm on an earlier snapshot of the same
   store. Events only append, and each shoplm training held out every actor's last two
   events, so an actor's latest event now was either held out then or is newer. The
   serving model scores only the items it was trained on: an item added since scores below
   every known one for it. That is the gap a retrain closes.
4. **Decision**: promote when the candidate's NDCG@10 is at least the serving model's times
   `1 - margin` (default 0.01: at most 1% lower, about the noise of NDCG@10 on a few
   thousand cases). Without a serving model the candidate is promoted.
5. **Promotion**: `POST /v1/admin/reload {"recommend_model": name}` on each reload URL. On
   PostgreSQL one is enough, since the change feed tells every other host. Then
   `SHOPLM_MODELS_DIR/current` is pointed at it (a symlink swapped in one rename), so a
   service started with `SHOPLM_RECOMMEND_MODEL=<models_dir>/current` serves it after a
   restart too.
6. **Report**: `<models_dir>/<name>/retrain/` holds report.md (tables and a chart) and
   report.json, whatever the decision. A rejected candidate stays on disk beside it, for
   inspection.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.errors import ConfigError
from shoplm.progress import Progress, quiet
from shoplm.recommend.checkpoint import load_model
from shoplm.recommend.evaluate import evaluate_recommenders, prepare_catalog
from shoplm.recommend.model import model_scores
from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import Catalog, Histories
from shoplm.recommend.train import best_epoch, cut_short_warning, train_and_save, train_config, training_stop
from shoplm.data.records import Event
from shoplm.report import Section, write_report
from shoplm.store.base import Store

CURRENT = "current"  # the symlink in models_dir naming the promoted model
COMPARED = ("ndcg@10", "recall@10", "mrr")


class OnCatalog:
    """A trained model ranking the items of another catalog (the snapshot's): history items
    it was not trained on are dropped, and items it does not know score -inf."""

    def __init__(self, name: str, directory: Path, item_ids: Sequence[str], device: str | None, batch: int = 256):
        self.name, self.directory, self.batch = name, Path(directory), batch
        self.model, model_items, self.params = load_model(self.directory, device)
        self.device = str(next(self.model.parameters()).device)
        index = {item: i for i, item in enumerate(model_items)}
        self.to_model = np.fromiter((index.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        self.known = self.to_model >= 0
        self.unknown_items = int((~self.known).sum())

    def fit(self, data: FitData) -> None:
        raise ConfigError(f"{self.name} is a trained model; it is scored, not fitted")

    def score(self, histories: Histories) -> np.ndarray:
        items, weights = [], []
        for h, w in zip(histories.items, histories.weights):
            mapped = self.to_model[h]
            keep = mapped >= 0
            items.append(mapped[keep])
            weights.append(w[keep])
        scores = model_scores(self.model, Histories(items, weights), self.batch, self.device)  # (b, n_model)
        out = np.full((len(histories), len(self.to_model)), -np.inf, dtype=np.float32)
        out[:, self.known] = scores[:, self.to_model[self.known]]
        return out


@dataclass
class RetrainResult:
    name: str  # the candidate's directory name in models_dir
    candidate: dict[str, float]
    serving: dict[str, float] | None
    promoted: bool
    reason: str
    report: Path
    reloaded: list[dict[str, Any]] = field(default_factory=list)


def snapshot(store: Store, until: float) -> tuple[Catalog, dict[str, int]]:
    """The catalog and the events with timestamp <= `until`, in the order they were stored;
    counts of what was read, used and left out (read = used + later + unknown item)."""
    items = store.items()
    known = {item.item_id for item in items}
    frame = store.events_frame()
    events, counts = [], {"events_read": frame.height, "events_used": 0, "events_after_start": 0,
                          "events_unknown_item": 0}
    for row in frame.drop("seq").iter_rows():
        event = Event(row[0], row[3], row[1], row[2], *row[4:])
        if event.timestamp > until:
            counts["events_after_start"] += 1
        elif event.item_id is not None and event.item_id not in known:
            counts["events_unknown_item"] += 1
        else:
            events.append(event)
    counts["events_used"] = len(events)
    counts["items"] = len(items)
    return Catalog(items, events), counts


def retrain(settings: Settings, store: Store, serving: str | None = None, name: str | None = None,
            margin: float = 0.01, reload_urls: Sequence[str] = (), admin_key: str | None = None,
            progress: Progress = quiet, client: Any = None) -> RetrainResult:
    """The whole job (see the module docstring). `serving`: the serving model's directory,
    relative to `settings.models_dir` (default: `settings.recommend_model`; None and no
    setting: no comparison). `client`: an httpx-like client for the reload calls (tests)."""
    if not 0 <= margin < 1:
        raise ConfigError(f"--margin must be in [0, 1): got {margin}")
    started = time.time()
    root = settings.models_dir.resolve()
    name = name or "recommend-" + datetime.fromtimestamp(started, tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = _inside(root, name, "--name")
    if out.exists():
        raise ConfigError(f"{out} exists already; name the candidate with --name")
    serving_dir = _serving_dir(settings, root, serving)

    catalog, counts = snapshot(store, started)
    prepared = prepare_catalog(settings, catalog, progress=progress)
    log = train_and_save(settings, prepared.item_ids, prepared.split, prepared.vectors, 0.0, out, progress)
    trained = best_epoch(log)

    models = [OnCatalog("candidate", out, prepared.item_ids, settings.device)]
    if serving_dir is not None:
        models.append(OnCatalog("serving", serving_dir, prepared.item_ids, settings.device))
    overall, slices, info = evaluate_recommenders(models, prepared.split, prepared.vectors, prepared.cold,
                                                  fitted=frozenset(m.name for m in models), progress=progress)
    candidate, current = overall["candidate"], overall.get("serving")
    if current is None:
        promoted, reason = True, "no serving model to compare with"
    else:
        floor = current["ndcg@10"] * (1 - margin)
        promoted = candidate["ndcg@10"] >= floor
        reason = (f"candidate NDCG@10 {candidate['ndcg@10']:.4f} {'>=' if promoted else '<'} "
                  f"{floor:.4f} = serving {current['ndcg@10']:.4f} x (1 - margin {margin:g})")
    reloaded = []
    if promoted:
        key = admin_key or (settings.admin_key.get_secret_value() if settings.admin_key else None)
        reloaded = [_reload(url, name, key, client) for url in reload_urls]
        _point_current(root, name)
    result = RetrainResult(name, candidate, current, promoted, reason, out / "retrain" / "report.md", reloaded)
    document = {
        "name": name, "directory": str(out), "serving": str(serving_dir) if serving_dir else None,
        "promoted": promoted, "reason": reason, "margin": margin, "snapshot_until": started,
        "snapshot": counts, "hold_out": {"cases": len(prepared.split.test), "protocol": "each actor's latest item "
                                         "event, ranked over the whole catalog after the events before it"},
        "serving_unknown_items": models[1].unknown_items if current is not None else None,
        "models": overall, "slices": slices, "slice_counts": info["slice_counts"],
        "training": {**training_stop(log, train_config(settings)), "best_epoch": trained.get("epoch"),
                     "valid_ndcg@10": trained.get("valid_ndcg@10"),
                     "train_seconds": json.loads((out / "params.json").read_text()).get("train_seconds")},
        "reloaded": reloaded, "seconds": round(time.time() - started, 1),
    }
    _write_report(out / "retrain", document)
    return result


def _inside(root: Path, name: str, option: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ConfigError(f"{option} {name!r} must name a directory inside the models directory {root}")
    return path


def _serving_dir(settings: Settings, root: Path, serving: str | None) -> Path | None:
    if serving is None and settings.recommend_model is None:
        return None
    directory = _inside(root, serving, "--serving") if serving is not None else Path(settings.recommend_model).resolve()
    if not (directory / "params.json").is_file():
        raise ConfigError(f"no trained model in {directory} (params.json missing): the serving model to compare "
                          "with; name it with --serving (relative to SHOPLM_MODELS_DIR)")
    return directory


def _reload(url: str, name: str, admin_key: str | None, client: Any = None) -> dict[str, Any]:
    """POST /v1/admin/reload on one service; what it answered (a failure is reported, not raised:
    the other services and the `current` link are still updated)."""
    import httpx

    target = url.rstrip("/") + "/v1/admin/reload"
    try:
        if client is None:
            with httpx.Client(timeout=120) as fresh:
                answer = fresh.post(target, json={"recommend_model": name}, headers={"X-API-Key": admin_key or ""})
        else:
            answer = client.post(target, json={"recommend_model": name}, headers={"X-API-Key": admin_key or ""})
        return {"url": url, "status": answer.status_code, "ok": answer.status_code == 200,
                "body": answer.json() if answer.headers.get("content-type", "").startswith("application/json") else answer.text}
    except httpx.HTTPError as error:
        return {"url": url, "status": None, "ok": False, "body": f"{error.__class__.__name__}: {error}"}


def _point_current(root: Path, name: str) -> None:
    """models_dir/current -> name, replaced in one rename (readers see the old or the new link)."""
    staged = root / f".{CURRENT}.{os.getpid()}"
    staged.unlink(missing_ok=True)
    staged.symlink_to(name, target_is_directory=True)
    os.replace(staged, root / CURRENT)


def _write_report(out_dir: Path, document: dict[str, Any]) -> Path:
    models = {name: {k: v for k, v in metrics.items() if k in COMPARED} for name, metrics in document["models"].items()}
    by_length: dict[str, dict[str, float]] = {}  # model -> history length bucket (cases) -> NDCG@10
    for bucket, per_model in document["slices"].get("history_len", {}).items():
        for name, metrics in per_model.items():
            label = f"{bucket} events (n={document['slice_counts']['history_len'][bucket]:,})"
            by_length.setdefault(name, {})[label] = metrics["ndcg@10"]
    snap = document["snapshot"]
    preamble = (
        f"**{'Promoted' if document['promoted'] else 'Kept the serving model'}**: {document['reason']}.\n\n"
        f"Candidate `{document['directory']}`; serving model `{document['serving']}`. Snapshot of the store up to "
        f"{datetime.fromtimestamp(document['snapshot_until'], tz=timezone.utc):%Y-%m-%d %H:%M:%S UTC}: "
        f"{snap['items']:,} items, {snap['events_used']:,} of {snap['events_read']:,} events "
        f"({snap['events_after_start']:,} newer than the run, {snap['events_unknown_item']:,} naming deleted items). "
        f"Hold-out: {document['hold_out']['cases']:,} cases, {document['hold_out']['protocol']}. "
        f"The candidate trained {document['training']['epochs']} epoch(s) (best {document['training']['best_epoch']}) "
        f"in {document['training']['train_seconds']} s.")
    warning = cut_short_warning(document["training"])
    if warning:
        preamble += f"\n\n**{warning}.**"
    if document["serving_unknown_items"]:
        preamble += f" The serving model does not know {document['serving_unknown_items']:,} of the items."
    if document["reloaded"]:
        preamble += " Reloaded: " + "; ".join(f"{r['url']} -> {r['status']}" for r in document["reloaded"]) + "."
    sections = [Section("Hold-out, candidate against serving", models, chart="models.png")]
    if by_length:
        sections.append(Section("NDCG@10 by history length", by_length))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(document, indent=2, default=str))
    return write_report(out_dir, "Scheduled retraining of the recommendation model", sections, preamble)

