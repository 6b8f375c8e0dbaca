"""A/B experiments, the data model: arms with traffic shares and sticky assignment.

    experiment = Experiment.parse({"name": "fusion", "arms": [
        {"name": "control", "share": 0.5},
        {"name": "bm25-heavy", "share": 0.5, "settings": {"hybrid_dense_weight": 0.2}}]})
    arm = experiment.assign("visitor-42")       # the same arm for this visitor, always

**Assignment** hashes the visitor (user id, else session id) with the experiment's salt
(blake2b -> a number in [0, 1)) into the arms' cumulative shares: sticky without storing
anything, independent across experiments (each has its own salt), and a visitor without an
id is in no arm. **An arm** is a named configuration: setting overrides of search among
`OVERRIDES` (the fusion method and weight, the fine-tuned model's re-ranker on or off), a
search model directory (a `shoplm train search` output: the arm's searches encode queries
and items with it, and use its re-ranker) and/or a recommendation model directory
(recommendations, browse pages and search personalisation read it); an empty arm is the control, the service as configured. Every list answered to a visitor in an arm carries the
arm in its impression, so analytics split every surface by arm.

The statistics of an experiment's results are in shoplm/engine/experiments.py.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from shoplm.errors import ShopLMError

# What an arm may change (search, today), with the type its value must have.
OVERRIDES: dict[str, type | tuple[type, ...]] = {
    "hybrid_dense_weight": (int, float), "hybrid_method": str, "search_rerank": bool,
}


class ExperimentError(ShopLMError):
    """An experiment that cannot be run; `field` names the bad part (arms[1].share, ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    settings: dict[str, Any] = field(default_factory=dict)
    recommend_model: str | None = None  # a `shoplm train recommend` directory inside SHOPLM_MODELS_DIR
    search_model: str | None = None  # a `shoplm train search` (or any sentence-transformers) directory there


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    salt: str
    status: str = "running"  # running, stopped, promoted
    winner: str | None = None
    id: int | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], id: int | None = None) -> "Experiment":
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ExperimentError("name", "a non-empty name of at most 200 characters")
        arms_raw = raw.get("arms")
        if not isinstance(arms_raw, list) or len(arms_raw) < 2:
            raise ExperimentError("arms", "a list of at least two arms ({name, share, settings?})")
        arms = []
        for i, arm in enumerate(arms_raw):
            if not isinstance(arm, Mapping):
                raise ExperimentError(f"arms[{i}]", "an object {name, share, settings?}")
            arm_name, share = arm.get("name"), arm.get("share")
            if not isinstance(arm_name, str) or not arm_name.strip() or ":" in arm_name or len(arm_name) > 100:
                raise ExperimentError(f"arms[{i}].name", "a non-empty name without ':' (at most 100 characters)")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
                raise ExperimentError(f"arms[{i}].share", "a number in (0, 1]")
            overrides = arm.get("settings") or {}
            if not isinstance(overrides, Mapping):
                raise ExperimentError(f"arms[{i}].settings", "an object of setting overrides")
            for key, value in overrides.items():
                if key not in OVERRIDES:
                    raise ExperimentError(f"arms[{i}].settings.{key}", f"not a setting an arm may change; allowed: "
                                          f"{', '.join(OVERRIDES)}")
                if isinstance(value, bool) and OVERRIDES[key] is not bool or not isinstance(value, OVERRIDES[key]):
                    raise ExperimentError(f"arms[{i}].settings.{key}", f"got {value!r}")
            if "hybrid_dense_weight" in overrides and not 0 <= overrides["hybrid_dense_weight"] <= 1:
                raise ExperimentError(f"arms[{i}].settings.hybrid_dense_weight", "a weight in [0, 1]")
            if overrides.get("hybrid_method", "weighted") not in ("weighted", "rrf"):
                raise ExperimentError(f"arms[{i}].settings.hybrid_method", "weighted or rrf")
            extra = set(arm) - {"name", "share", "settings", "recommend_model", "search_model"}
            if extra:
                raise ExperimentError(f"arms[{i}].{sorted(extra)[0]}", "an arm has name, share, settings, "
                                      "recommend_model and search_model")
            models = {}
            for kind in ("recommend_model", "search_model"):
                model = models[kind] = arm.get(kind)
                if model is not None and (not isinstance(model, str) or not model.strip() or ".." in model.split("/")):
                    raise ExperimentError(f"arms[{i}].{kind}", "a model directory's name inside SHOPLM_MODELS_DIR")
            arms.append(Arm(arm_name.strip(), float(share), dict(overrides), **models))
        if len({a.name for a in arms}) != len(arms):
            raise ExperimentError("arms", "arm names must differ")
        total = sum(a.share for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ExperimentError("arms", f"the shares sum to {total:g}; they must sum to 1")
        salt = raw.get("salt") or secrets.token_hex(8)
        status = raw.get("status", "running")
        if status not in ("running", "stopped", "promoted"):
            raise ExperimentError("status", "running, stopped or promoted")
        return cls(name.strip(), tuple(arms), str(salt), status, raw.get("winner"), id)

    def assign(self, actor: str | None) -> Arm | None:
        """The visitor's arm (the same every time), or None without a visitor id or once stopped;
        after `promote`, every visitor gets the winner."""
        if self.status == "promoted":
            return next(a for a in self.arms if a.name == self.winner)
        if self.status != "running" or not actor:
            return None
        digest = hashlib.blake2b(f"{self.salt}\x00{actor}".encode(), digest_size=8).digest()
        point, edge = int.from_bytes(digest, "big") / 2**64, 0.0
        for arm in self.arms:
            edge += arm.share
            if point < edge:
                return arm
        return self.arms[-1]

    def label(self, arm: Arm) -> str:
        """How the arm is named in list ids' impressions and in analytics: "experiment:arm"."""
        return f"{self.name}:{arm.name}"

    def body(self) -> dict[str, Any]:
        """What the store keeps (shoplm/store: a JSON document per experiment)."""
        return {"name": self.name, "salt": self.salt, "status": self.status, "winner": self.winner,
                "arms": [asdict(a) for a in self.arms]}

    @classmethod
    def from_body(cls, body: dict[str, Any], id: int, created_at: float, updated_at: float) -> "Experiment":
        return replace(cls.parse(body, id), created_at=created_at, updated_at=updated_at)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.body(), "created_at": self.created_at, "updated_at": self.updated_at}
