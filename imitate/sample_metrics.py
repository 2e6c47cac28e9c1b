"""How well a policy's action samples match the demonstrations, measured on the data itself.

At a held-out state there is one demonstrated action, so the demonstrated distribution at a query
state is built from its neighbours: the closest state of each of the ``neighbours`` demonstrations
that come nearest to it (in standardized observation space, at most one state per demonstration,
so that consecutive steps of one demo do not crowd out the other routes). Their executed actions
(the first ``n_act`` of each chunk, flattened, scaled to [-1, 1] by the data's action range) are
the reference sample Y (k, d); a head draws M chunks X (M, d) at the query state.

    query (valid split)  --nearest state of each of the k nearest demos-->  Y (k, d)
    head.sample at the query's obs window, M times                        -->  X (M, d)
    energy_distance(X, Y), mmd_rbf(X, Y), coverage(X, Y)                  averaged over the queries

Energy distance (Székely & Rizzo): 2 E|X-Y| - E|X-X'| - E|Y-Y'|, 0 for equal distributions, with
the within-sample terms as U-statistics (so a sample against itself scores about 0). MMD: squared
maximum mean discrepancy with an RBF kernel whose bandwidth is the median pairwise distance of the
pooled sample. Coverage (Naeem et al. 2020): the share of demonstrated actions within whose
k-nearest-neighbour ball at least one sampled action falls: 1 when every mode is reached, about
0.5 when a policy keeps one of two modes, 0 for a mean that lies between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imitate.data import WindowSampler
from imitate.errors import ImitateError


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, d), (M, d) -> (N, M)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _within_mean(d: np.ndarray) -> float:
    """Mean of a square distance (or kernel) matrix without its diagonal (a U-statistic)."""
    n = d.shape[0]
    return float((d.sum() - np.trace(d)) / (n * (n - 1))) if n > 1 else 0.0


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance between samples x (N, d) and y (M, d): 0 for equal distributions, larger the
    more they differ. Within-sample terms are U-statistics (unbiased; small negative values occur)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return 2.0 * float(_pairwise(x, y).mean()) - _within_mean(_pairwise(x, x)) - _within_mean(_pairwise(y, y))


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD between x (N, d) and y (M, d) with the kernel exp(-|a-b|^2 / (2 h^2)),
    h the median pairwise distance of the pooled sample unless ``bandwidth`` is given."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if bandwidth is None:
        pooled = np.concatenate([x, y])
        d = _pairwise(pooled, pooled)[np.triu_indices(len(pooled), 1)]
        bandwidth = float(np.median(d[d > 0])) if (d > 0).any() else 1.0

    def k(a, b):
        return np.exp(-_pairwise(a, b) ** 2 / (2.0 * bandwidth ** 2))

    return _within_mean(k(x, x)) + _within_mean(k(y, y)) - 2.0 * float(k(x, y).mean())


def coverage(x: np.ndarray, y: np.ndarray, k: int = 3) -> float:
    """Share of the reference points y (M, d) whose ball to their k-th nearest other reference point
    holds at least one sample of x (N, d) (Naeem et al. 2020, "coverage")."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k = min(k, len(y) - 1)
    if k < 1:
        raise ValueError("coverage needs at least 2 reference points")
    dyy = _pairwise(y, y)
    radius = np.sort(dyy, axis=1)[:, k]          # column 0 is the point itself
    return float((_pairwise(y, x).min(1) <= radius).mean())


# -- the query set: held-out states and their demonstrated actions ----------------------------------
@dataclass
class QuerySet:
    """Held-out query states with their demonstrated (reference) actions.

    Attributes:
        obs: observation key -> (Q, To, *shape), the windows a policy sees at each query.
        reference: (Q, k, n_act, A) demonstrated executed actions, raw units.
        rows: (Q,) store rows of the queries; episodes: (Q,) their demonstration index.
        action_low, action_high: (A,) the data's action range, to scale actions to [-1, 1].
        n_act: actions compared per chunk.
    """

    obs: dict
    reference: np.ndarray
    rows: np.ndarray
    episodes: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray
    n_act: int

    def scale(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions (..., n_act, A) -> flattened and scaled to [-1, 1]: (..., n_act * A)."""
        span = np.where(self.action_high > self.action_low, self.action_high - self.action_low, 1.0)
        a = 2.0 * (np.asarray(actions, np.float64) - self.action_low) / span - 1.0
        return a.reshape(*a.shape[:-2], -1)

    def spread(self) -> np.ndarray:
        """(Q,) mean pairwise distance of each query's scaled reference: high where demos disagree."""
        return np.array([_within_mean(_pairwise(y, y)) for y in self.scale(self.reference)])


def query_set(store, obs_horizon: int, action_horizon: int, n_act: int, queries: int = 64,
              neighbours: int = 16, seed: int = 0) -> QuerySet:
    """``queries`` states drawn from the ``valid`` split (every demo when the file has none), each
    with at least ``n_act`` steps left, and the executed actions of their ``neighbours`` nearest
    demonstrations (see the module docstring). Deterministic for a given store and seed."""
    lengths = store.episode_lengths
    starts, ends = store.episode_starts, store.episode_ends
    n_eps = store.n_episodes
    if n_eps < 2:
        raise ImitateError(f"{store.source}: comparing action distributions needs at least 2 demonstrations")
    k = min(neighbours, n_eps)
    feats = np.concatenate([store.get(f"obs/{key}", np.arange(len(store))).reshape(len(store), -1).astype(np.float64)
                            for key in store.obs_keys], axis=1)
    std = feats.std(0)
    feats = (feats - feats.mean(0)) / np.where(std > 1e-8, std, 1.0)
    episode_of = np.repeat(np.arange(n_eps), lengths)
    usable = np.arange(len(store)) + n_act <= np.repeat(ends, lengths)        # n_act real actions left
    pool = store.episodes_in("valid") if "valid" in store.filter_keys and len(store.filter_keys["valid"]) else np.arange(n_eps)
    candidates = np.flatnonzero(usable & np.isin(episode_of, pool))
    if len(candidates) == 0:
        raise ImitateError(f"{store.source}: no held-out state has {n_act} actions left to compare")
    rows = np.sort(np.random.default_rng(seed).choice(candidates, size=min(queries, len(candidates)), replace=False))
    ref_rows = np.empty((len(rows), k), np.int64)
    for i, q in enumerate(rows):
        d = np.where(usable, np.linalg.norm(feats - feats[q], axis=1), np.inf)
        per_ep = np.minimum.reduceat(d, starts)                                   # (E,) nearest state per demo
        for j, e in enumerate(np.argsort(per_ep, kind="stable")[:k]):
            ref_rows[i, j] = starts[e] + int(np.argmin(d[starts[e]:ends[e]]))
    sampler = WindowSampler(store, obs_horizon, action_horizon, batch_size=1)
    obs = sampler.gather(rows).obs                                                # window index = row (all demos)
    actions = store.get("actions", ref_rows[..., None] + np.arange(n_act))        # (Q, k, n_act, A)
    acts = store.get("actions", np.arange(len(store)))
    return QuerySet(obs=obs, reference=actions, rows=rows, episodes=episode_of[rows], action_low=acts.min(0),
                    action_high=acts.max(0), n_act=n_act)


def sample_policy(policy, qs: QuerySet, samples: int, seed: int = 0, max_batch: int = 4096) -> np.ndarray:
    """``samples`` chunks of ``policy`` at every query: (Q, M, n_act, A), raw units."""
    import torch

    generator = torch.Generator(device=policy.device).manual_seed(seed)
    n_q = len(qs.rows)
    flat = {k: np.repeat(v, samples, axis=0) for k, v in qs.obs.items()}        # (Q * M, To, *shape)
    out = [policy.predict_chunk({k: v[i:i + max_batch] for k, v in flat.items()}, generator=generator)[:, :qs.n_act]
           for i in range(0, n_q * samples, max_batch)]
    return np.concatenate(out).reshape(n_q, samples, qs.n_act, -1)


def distribution_metrics(samples: np.ndarray, qs: QuerySet) -> dict[str, float]:
    """Mean over queries of energy distance, MMD and coverage between samples (Q, M, n_act, A) and
    the queries' demonstrated actions."""
    x, y = qs.scale(samples), qs.scale(qs.reference)
    per = np.array([(energy_distance(a, b), mmd_rbf(a, b), coverage(a, b)) for a, b in zip(x, y)])
    return {"energy_distance": float(per[:, 0].mean()), "mmd": float(per[:, 1].mean()),
            "coverage": float(per[:, 2].mean())}
