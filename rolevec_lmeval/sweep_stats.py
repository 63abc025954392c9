"""Statistics of the sweep, per grid point, from per-question 0/1 correctness (scipy throughout).

- accuracy with a percentile-bootstrap 95% CI (``scipy.stats.bootstrap``);
- paired comparison with the unsteered model on the same questions: Delta acc with a paired bootstrap CI and
  the exact McNemar test (``scipy.stats.binomtest`` on the discordant pairs);
- Holm's step-down adjustment over a family (scipy ships only FDR methods, so it is the 4-line
  definition, checked against a brute-force reference in the tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
CONFIDENCE = 0.95


def direction_sha(vec, position: int, method: str = "raw") -> str:
    """Provenance of a grid point: sha256 (16 hex) of the [n_layers, d_model] directions it drew from."""
    import hashlib

    tensor = vec.directions if method == "raw" else vec.centered
    data = tensor[position].contiguous().numpy().tobytes()  # [n_layers, d_model] float32
    return hashlib.sha256(data).hexdigest()[:16]


def bits(s: str) -> np.ndarray:
    """'0110' -> array([0, 1, 1, 0]) (int8)."""
    return np.frombuffer(s.encode(), dtype=np.uint8).astype(np.int8) - ord("0")


@dataclass(frozen=True)
class Accuracy:
    acc: float
    lo: float
    hi: float
    n: int


@dataclass(frozen=True)
class Paired:
    delta: float  # acc(steered) - acc(base)
    lo: float
    hi: float
    p: float  # exact McNemar
    gained: int  # base wrong, steered right
    lost: int  # base right, steered wrong
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def _ci(data: tuple[np.ndarray, ...], statistic, seed: int, paired: bool = False) -> tuple[float, float]:
    if len(data[0]) < 2 or all(np.all(d == d[0]) for d in data):
        value = float(statistic(*data, axis=-1))
        return value, value
    res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=N_RESAMPLES,
                          confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def accuracy(correct: np.ndarray, seed: int = 0) -> Accuracy:
    """Mean of 0/1 ``correct`` with a 95% percentile-bootstrap CI (NaN when empty)."""
    if len(correct) == 0:
        return Accuracy(float("nan"), float("nan"), float("nan"), 0)
    lo, hi = _ci((correct,), np.mean, seed)
    return Accuracy(float(np.mean(correct)), lo, hi, len(correct))


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def paired(steered: np.ndarray, base: np.ndarray, seed: int = 0) -> Paired:
    """Delta accuracy vs the unsteered model on the same questions: paired bootstrap CI + exact McNemar."""
    if len(steered) != len(base):
        raise ValueError(f"paired comparison needs equal lengths, got {len(steered)} and {len(base)}")
    if len(steered) == 0:
        return Paired(float("nan"), float("nan"), float("nan"), 1.0, 0, 0, 0)
    gained = int(np.sum((steered == 1) & (base == 0)))
    lost = int(np.sum((steered == 0) & (base == 1)))
    p = float(stats.binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0
    lo, hi = _ci((steered, base), _mean_diff, seed, paired=True)
    return Paired(float(_mean_diff(steered, base)), lo, hi, p, gained, lost, len(steered))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values: p_(i) * (m - i + 1), running maximum, capped at 1 (input order kept)."""
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    out = np.empty_like(adj)
    out[order] = adj
    return out.tolist()
