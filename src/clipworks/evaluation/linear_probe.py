"""Linear probes on frozen image features (Radford et al. 2021, Sec. 3.2 and Appendix A.3; few-shot: Sec. 3.1.5).

Appendix A.3: an L-BFGS logistic regression (scikit-learn) on the image tower's features; the L2 strength is chosen
on a validation split with a parametric binary search that starts from 1e-6, 1e-4, ..., 1e6 and halves the interval
around the best value until it reaches 8 steps per decade. Here C = 1/lambda is searched over the same range.

Everything is a function of arrays: features in, accuracies out. The test set is touched once, after the choice of C
(`probe` takes it only to score the final model). Few-shot probes (`few_shot_probe`) draw k training examples per
class; their C is chosen on a validation set drawn from the rest of the training pool (never from the test set) —
a deliberate difference from a strict k-shot budget that favours the probe, so "zero-shot matches a k-shot probe"
is a conservative statement.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ..errors import ConfigError, DataError

INITIAL_LOG10_C: tuple[float, ...] = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)
FINEST_STEP = 1 / 8  # decades: the search stops at 8 steps per decade
MAX_ITER = 1000


@dataclass
class ProbeResult:
    c: float  # the chosen inverse L2 strength
    val_accuracy: float  # top-1 on the validation split at `c`
    test_accuracy: float  # top-1 on the test set of the model refitted at `c`
    sweep: dict[float, float] = field(default_factory=dict)  # every C tried -> validation top-1
    model: LogisticRegression | None = None  # the refitted probe, to score other test sets


def fit(features: np.ndarray, labels: np.ndarray, c: float) -> LogisticRegression:
    """L-BFGS multinomial logistic regression with inverse L2 strength `c`."""
    model = LogisticRegression(C=c, max_iter=MAX_ITER, solver="lbfgs")
    # One BLAS thread: probe-sized problems spend longer synchronising threads than computing.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # Weak regularisation on separable data never converges to a finite optimum; the last iterate is fine.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    return model


def accuracy(model: LogisticRegression, features: np.ndarray, labels: np.ndarray) -> float:
    return float((model.predict(features) == labels).mean())


def select_c(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray
             ) -> tuple[float, dict[float, float]]:
    """The C with the best validation top-1 (ties: the stronger regularisation), and every C tried."""
    scores: dict[float, float] = {}

    def score(log_c: float) -> float:
        log_c = round(log_c, 6)
        if log_c not in scores:
            scores[log_c] = accuracy(fit(train_x, train_y, 10.0 ** log_c), val_x, val_y)
        return scores[log_c]

    def best() -> float:
        return max(scores, key=lambda lc: (scores[lc], -lc))

    for log_c in INITIAL_LOG10_C:
        score(log_c)
    step = INITIAL_LOG10_C[1] - INITIAL_LOG10_C[0]
    while step > FINEST_STEP:
        step /= 2
        centre = best()
        for log_c in (centre - step, centre + step):
            if INITIAL_LOG10_C[0] <= log_c <= INITIAL_LOG10_C[-1]:
                score(log_c)
    chosen = best()
    return 10.0 ** chosen, {10.0 ** lc: s for lc, s in sorted(scores.items())}


def split_train_val(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): a stratified random split keeping at least one item per class on the train side."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(len(idx) - 1, int(round(val_fraction * len(idx))))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    if not val:
        raise DataError("the training set is too small to carve a validation split; give more images per class")
    return np.sort(np.array(train)), np.sort(np.array(val))


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
          val_fraction: float = 0.2, seed: int = 0) -> ProbeResult:
    """C swept on a validation split of the training set, refitted on all of it, scored once on the test set."""
    tr, va = split_train_val(train_y, val_fraction, seed)
    c, sweep = select_c(train_x[tr], train_y[tr], train_x[va], train_y[va])
    final = fit(train_x, train_y, c)
    return ProbeResult(c=c, val_accuracy=sweep[c], test_accuracy=accuracy(final, test_x, test_y), sweep=sweep,
                       model=final)


def few_shot_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k random indices per class (every class present must have at least k items)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k:
            raise DataError(f"class {c} has {len(idx)} training images, fewer than --shots {k}")
        chosen.extend(rng.choice(idx, size=k, replace=False))
    return np.sort(np.array(chosen))


def few_shot_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, k: int,
                   seeds: int = 5, val_size: int = 1000) -> dict[str, float | list[float]]:
    """Mean and std of test top-1 over `seeds` draws of k examples per class from the training pool.

    C is chosen on up to `val_size` other training examples, then the probe is fitted on the k-shot sample alone.
    """
    if k < 1 or seeds < 1:
        raise ConfigError(f"--shots and --seeds must be at least 1 (got {k} and {seeds})")
    accuracies, cs = [], []
    for seed in range(seeds):
        shots = few_shot_indices(train_y, k, seed)
        rest = np.setdiff1d(np.arange(len(train_y)), shots)
        rest = np.random.default_rng(10_000 + seed).permutation(rest)[:val_size]
        if len(rest) == 0:
            raise DataError("no training images left for validation after drawing the shots; give more images")
        c, _ = select_c(train_x[shots], train_y[shots], train_x[rest], train_y[rest])
        model = fit(train_x[shots], train_y[shots], c)
        accuracies.append(accuracy(model, test_x, test_y))
        cs.append(c)
    return {"k": k, "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies)),
            "accuracies": accuracies, "c": cs}


def shots_matching(zero_shot: float, curve: dict[int, float]) -> float | None:
    """How many labelled examples per class a probe needs to match `zero_shot` accuracy (the paper's Figure 7),
    log-linearly interpolated between the measured k; None if no measured k reaches it."""
    points = sorted(curve.items())
    if points and points[0][1] >= zero_shot:
        return float(points[0][0])
    for (k0, a0), (k1, a1) in zip(points, points[1:]):
        if a0 < zero_shot <= a1:
            t = (zero_shot - a0) / (a1 - a0)
            return float(math.exp(math.log(k0) + t * (math.log(k1) - math.log(k0))))
    return None
