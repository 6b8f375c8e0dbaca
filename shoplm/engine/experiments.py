"""A/B experiments, the statistics and how an arm changes search (the data model, its
validation and sticky assignment are shoplm/data/experiments.py).

    results(experiment, per_arm)                # CTR, conversion, revenue per visitor, tests
    arm_fusion(arm, pipeline.fusion)            # the arm's fusion, or None

Per visitor, since one visitor's impressions are not independent: the share of an arm's
visitors who clicked at least once, and who bought, each compared with the first arm by a
two-sided two-proportion z-test (pooled variance; a normal-approximation 95% confidence
interval of the difference), plus revenue per visitor. A sample-ratio mismatch check
compares the visitors per arm with the shares by a chi-square test and flags p < 0.001 (the
threshold of Fabijan et al., KDD 2019): then assignment or logging is broken and no
difference should be trusted.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from shoplm.data.experiments import Arm, Experiment
from shoplm.search.fusion import Fusion

SRM_P = 0.001


def arm_fusion(arm: Arm, base: Fusion) -> Fusion | None:
    """The arm's fusion, None when it changes none of it."""
    if not {"hybrid_dense_weight", "hybrid_method"} & arm.settings.keys():
        return None
    return Fusion(arm.settings.get("hybrid_method", base.method),
                  float(arm.settings.get("hybrid_dense_weight", base.dense_weight)), base.rrf_k)


def _two_proportions(x1: int, n1: int, x0: int, n0: int) -> dict[str, float | None]:
    """Two-sided pooled z-test of p1 = p0 and a 95% normal interval of p1 - p0."""
    if not n1 or not n0:
        return {"difference": None, "low": None, "high": None, "z": None, "p_value": None}
    p1, p0 = x1 / n1, x0 / n0
    pooled = (x1 + x0) / (n1 + n0)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    z = (p1 - p0) / se_pooled if se_pooled > 0 else 0.0
    return {"difference": p1 - p0, "low": p1 - p0 - 1.96 * se, "high": p1 - p0 + 1.96 * se, "z": z,
            "p_value": math.erfc(abs(z) / math.sqrt(2))}


def sample_ratio(visitors: Sequence[int], shares: Sequence[float]) -> dict[str, float | bool]:
    """Chi-square goodness of fit of the visitors per arm to the shares."""
    from scipy.stats import chi2

    total = sum(visitors)
    if not total:
        return {"chi2": 0.0, "p_value": 1.0, "mismatch": False}
    stat = sum((v - total * s) ** 2 / (total * s) for v, s in zip(visitors, shares))
    p = float(chi2.sf(stat, len(visitors) - 1))
    return {"chi2": stat, "p_value": p, "mismatch": p < SRM_P}


def results(experiment: Experiment, per_arm: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """`per_arm`: arm label -> {visitors, clicked (visitors who clicked), bought (who bought),
    impressions, clicks, revenue} -> the report of each arm against the first, and the SRM check."""
    labels = [experiment.label(a) for a in experiment.arms]
    rows = {label: {k: per_arm.get(label, {}).get(k, 0) for k in
                    ("visitors", "clicked", "bought", "impressions", "clicks", "revenue")} for label in labels}
    control = rows[labels[0]]
    arms = {}
    for arm, label in zip(experiment.arms, labels):
        row = rows[label]
        n = row["visitors"]
        arms[arm.name] = {
            **row,
            "click_rate": row["clicked"] / n if n else 0.0,
            "conversion": row["bought"] / n if n else 0.0,
            "ctr": row["clicks"] / row["impressions"] if row["impressions"] else 0.0,
            "revenue_per_visitor": row["revenue"] / n if n else 0.0,
            "vs_control": None if label == labels[0] else {
                "click_rate": _two_proportions(row["clicked"], n, control["clicked"], control["visitors"]),
                "conversion": _two_proportions(row["bought"], n, control["bought"], control["visitors"]),
            },
        }
    return {"experiment": experiment.to_dict(), "arms": arms,
            "sample_ratio": sample_ratio([rows[l]["visitors"] for l in labels], [a.share for a in experiment.arms]),
            "test": "two-sided two-proportion z-test per visitor against the first arm; SRM: chi-square, p < 0.001"}
