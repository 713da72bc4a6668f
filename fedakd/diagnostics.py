"""Training diagnostics and failure flags (docs/method-card.md, "Stability").

At every evaluated round the engine measures each model a round produces -- the clients' uploads after
local training, their average, and the model the server deploys after its own step -- on a fixed probe
of the test inputs, so that a failure is pinned to the step that caused it:

- ``attention_entropy``: mean over inputs of -sum_j a_j ln a_j (nats; ln d for a uniform attention);
- ``attention_max``: mean over inputs of max_j a_j (1/d uniform, 1 one-hot);
- ``dead_units``: share of the backbone's feature units that are zero on every probe input;
- ``feature_l1``: mean L1 norm of the backbone features f; ``embed_max``: the largest value the head sees
  (h = d*a*f or a*f + f with attention, f without), the amplification that precedes a collapse;
- ``logit_norm``: mean L2 norm of the logits; ``weight_norm``: L2 norm of all weights;
- ``predicted_classes`` and ``top_class_share``: how many classes the model predicts, and the largest
  share of the inputs that one class takes.

Record keys are ``diag/<stage>/<name>`` (MLflow groups them by the slash) with stage ``local_min``,
``local_mean``, ``local_max`` (over the uploads), ``averaged`` and ``server``. The deployed model's
``predicted_classes`` and ``top_class_share`` over the whole test set are plain round keys.

Failure flags, judged per run from its history (``failure_flags``):

- ``collapsed`` from round r: the deployed model gives one class more than COLLAPSE_SHARE of the test
  predictions at round r and at every evaluated round after it. The step is ``averaged`` when the
  average of the uploads had already collapsed on the probe (local training did it; averaging passed it
  on), ``server`` when only the server's step did.
- transient collapses: evaluated rounds collapsed and later recovered from (recorded, not a failure).
- ``diverged`` at round r: a non-finite weight or loss in a model the method deploys; the step is the
  first of local, averaged, server where it appeared. A diverged run stops training; its remaining
  rounds repeat the frozen model's scores, so that it stays in the statistics with a full curve.

torch is imported inside the functions that need it, so that the reporting side can read the flags cheaply.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch

#: One class above this share of the balanced test set's predictions is a collapsed round. With C classes
#: and share s, balanced accuracy is at most 1/C + (1 - s): at s = 0.9 and C = 10, 0.2, within 10 points of
#: chance. A collapsed round alone is not a failure: FedAvg on the imbalance-100 pool predicts one class
#: in some early rounds and recovers (benchmarks/stability.py: 10 of 10 runs), so a run is flagged only
#: when the state lasts to its end; the rounds it recovered from are recorded as transient. Measured in
#: that study, no unflagged run ended with a top share above 0.894.
COLLAPSE_SHARE = 0.9
#: Test inputs the per-stage diagnostics run on (evenly strided over the test set, so balanced like it).
PROBE_SIZE = 256
STAGES = ("local_min", "local_mean", "local_max", "averaged", "server")
NAMES = ("attention_entropy", "attention_max", "dead_units", "feature_l1", "embed_max", "logit_norm",
         "weight_norm", "predicted_classes", "top_class_share")
PREFIX = "diag/"


def diag_key(stage: str, name: str) -> str:
    return f"{PREFIX}{stage}/{name}"


# -- single measurements (each checked by hand in tests/test_diagnostics.py) ---------------------------
def attention_entropy(attention: "torch.Tensor") -> float:
    """Mean over rows of -sum_j a_j ln a_j, with 0 ln 0 = 0."""
    import torch

    a = attention.double()
    terms = torch.where(a > 0, a * torch.log(a.clamp_min(1e-300)), torch.zeros_like(a))
    return float(-terms.sum(dim=1).mean()) + 0.0  # + 0.0: -0.0 for a one-hot row reads as 0


def dead_share(features: "torch.Tensor") -> float:
    """Share of columns (units) that are zero (or below) on every row."""
    return float((features <= 0).all(dim=0).double().mean())


def prediction_summary(predictions: "np.ndarray | Sequence[int]", num_classes: int) -> tuple[int, float]:
    """(number of distinct predicted classes, largest share one class takes)."""
    import numpy as np

    counts = np.bincount(np.asarray(predictions, dtype=np.int64), minlength=num_classes)
    return int((counts > 0).sum()), float(counts.max() / max(counts.sum(), 1))


def probe_indices(num_test: int, size: int = PROBE_SIZE) -> list[int]:
    """Evenly strided test indices (all of them when the test set is smaller than ``size``)."""
    if num_test <= size:
        return list(range(num_test))
    return [int(i * num_test / size) for i in range(size)]


def model_diagnostics(model, flat: "torch.Tensor", weights: "torch.Tensor", probe_x: "torch.Tensor",
                      num_classes: int) -> dict[str, float]:
    """Every NAMES value of the model ``weights`` (loaded into ``model``'s flat buffer) on ``probe_x``."""
    import torch

    flat.copy_(weights)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = model.features(probe_x)  # one pass: f, then what the head sees, then the logits
        embedded, attention = (features, None) if model.attention is None else model.attention(features)
        logits = model.head(embedded)
    model.train(was_training)
    logits = logits.float()
    distinct, share = prediction_summary(logits.argmax(dim=1).cpu().numpy(), num_classes)
    out = {
        "dead_units": dead_share(features), "feature_l1": float(features.abs().sum(dim=1).mean()),
        "embed_max": float(embedded.max()), "logit_norm": float(logits.norm(dim=1).mean()),
        "weight_norm": float(weights.double().norm()), "predicted_classes": distinct, "top_class_share": share,
    }
    if attention is not None:
        out["attention_entropy"] = attention_entropy(attention)
        out["attention_max"] = float(attention.max(dim=1).values.double().mean())
    return {key: (value if math.isfinite(value) else math.nan) for key, value in out.items()}


def stage_record(local: list[dict[str, float]], averaged: dict[str, float] | None,
                 server: dict[str, float] | None) -> dict[str, float]:
    """The ``diag/...`` keys of one round: uploads summarised by min, mean and max, then the two models."""
    record: dict[str, float] = {}
    for name in NAMES:
        values = [d[name] for d in local if name in d]
        if values:
            finite = [v for v in values if not math.isnan(v)]
            record[diag_key("local_min", name)] = min(finite) if finite else math.nan
            record[diag_key("local_mean", name)] = math.fsum(finite) / len(finite) if finite else math.nan
            record[diag_key("local_max", name)] = max(finite) if finite else math.nan
        for stage, values_of in (("averaged", averaged), ("server", server)):
            if values_of is not None and name in values_of:
                record[diag_key(stage, name)] = values_of[name]
    return record


# -- failure flags ---------------------------------------------------------------------------------
def collapse_onset(history: Sequence[Mapping[str, Any]], share: float = COLLAPSE_SHARE) -> dict[str, Any] | None:
    """The first evaluated round from which the deployed model stays collapsed (to the end), or None."""
    evaluated = [r for r in history if r.get("top_class_share") is not None]
    onset = None
    for record in evaluated:
        if record["top_class_share"] > share:
            onset = onset or record
        else:
            onset = None
    if onset is None:
        return None
    averaged = onset.get(diag_key("averaged", "top_class_share"))
    step = "averaged" if averaged is not None and averaged > share else "server"
    return {"round": int(onset["round"]), "step": step, "top_class_share": float(onset["top_class_share"])}


def transient_collapses(history: Sequence[Mapping[str, Any]], share: float = COLLAPSE_SHARE) -> list[int]:
    """Evaluated rounds at which the deployed model was collapsed but from which it recovered (not a failure:
    the run ends healthy; reported because a later round could as well have ended there)."""
    onset = collapse_onset(history, share)
    last = onset["round"] if onset else math.inf
    return [int(r["round"]) for r in history
            if r.get("top_class_share") is not None and r["top_class_share"] > share and r["round"] < last]


def failure_flags(history: Sequence[Mapping[str, Any]], diverged: Mapping[str, Any] | None) -> dict[str, Any]:
    """metrics.json's ``failure``: {"collapsed": None or {round, step, top_class_share},
    "diverged": None or {round, step, what}, "transient_collapses": [rounds collapsed and recovered from]}."""
    return {"collapsed": collapse_onset(history), "diverged": dict(diverged) if diverged else None,
            "transient_collapses": transient_collapses(history)}


def failed(failure: Mapping[str, Any] | None) -> bool:
    return bool(failure) and bool(failure.get("collapsed") or failure.get("diverged"))


def describe(failure: Mapping[str, Any] | None) -> str:
    """One phrase for a report or an MLflow tag: 'collapsed from round 2 (averaged)', or 'none'."""
    if not failure:
        return "none"
    parts = [f"{kind} {'from' if kind == 'collapsed' else 'at'} round {entry['round']} ({entry['step']})"
             for kind in ("diverged", "collapsed") if (entry := failure.get(kind))]
    return "; ".join(parts) or "none"
