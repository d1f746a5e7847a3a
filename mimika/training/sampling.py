"""Which faces an epoch trains on: all of them in a shuffled order, or drawn with weights that
balance the sets of a joint training set and the classes within each set.

A source of 1,232 faces beside one of 28,000 is seen 23 times less often when faces are drawn as
they come; with `source_balance` b a set of n faces holding k of the K classes is drawn in
proportion to n^(1-b) (k/K)^b (0: as they come; 1: every set in proportion to the classes it
teaches, so a set of one class, such as contempt_extra, counts for that class only), and with
`class_balance` c each class of a set in proportion to its count^(1-c) (0: as the set holds
them, 1: every class of the set equally often). Within a class of a set every face is equally
likely. An epoch draws as many faces as the
set holds, with replacement, from the run's seeded generator (so a resumed run draws the same).
"""

from __future__ import annotations

import numpy as np


def draw_weights(origins: np.ndarray, y: np.ndarray, source_balance: float, class_balance: float) -> np.ndarray:
    """Each face's probability of being drawn (summing to 1)."""
    weights = np.zeros(len(y), np.float64)
    sets, set_of = np.unique(origins, return_inverse=True)
    taught = np.array([len(np.unique(y[set_of == s])) for s in range(len(sets))], np.float64) / len(np.unique(y))
    set_share = (np.bincount(set_of, minlength=len(sets)).astype(np.float64) ** (1 - source_balance)
                 * taught ** source_balance)
    set_share /= set_share.sum()
    for s in range(len(sets)):
        mine = np.flatnonzero(set_of == s)
        classes, class_of = np.unique(y[mine], return_inverse=True)
        counts = np.bincount(class_of).astype(np.float64)
        class_share = counts ** (1 - class_balance)
        class_share /= class_share.sum()
        weights[mine] = set_share[s] * class_share[class_of] / counts[class_of]
    return weights / weights.sum()


def drawn_class_shares(weights: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """The share of each class among the faces an epoch draws: the class prior the network learns."""
    return np.bincount(y, weights=weights, minlength=n_classes) / weights.sum()


def epoch_order(rng: np.random.Generator, weights: np.ndarray | None, n: int) -> np.ndarray:
    """The faces of one epoch in training order: a permutation, or `n` weighted draws."""
    if weights is None:
        return rng.permutation(n)
    return rng.choice(n, size=n, replace=True, p=weights)
