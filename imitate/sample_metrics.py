"""How well a policy's action samples match the demonstrations, measured on the data itself.

At a held-out state there is one demonstrated action, so the demonstrated distribution at a query
state is built from its neighbours: the closest state of each of the ``neighbours`` demonstrations
that come nearest to it (in standardized observation space, at most one state per demonstration,
so that consecutive steps of one demo do not crowd out the other routes). Image keys (uint8
(H, W, C)) take part only in a file without low-dim keys, then as average-pooled pixels on a grid of
at most `POOL_GRID` x `POOL_GRID` (`state_features`); images reach the policy as uint8 windows. Their executed actions
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
#: Image keys are compared as the mean of each cell of this grid (per channel) when a file has no
#: low-dim key: coarse enough to be cheap, fine enough to place the objects of an 84 x 84 view.
POOL_GRID = 12
#: Rows of an image key read at once when pooling (bounds the memory of a large file).
POOL_CHUNK = 2048


def _is_image(store, key: str) -> bool:
    from imitate.data.checks import is_image

    one = store.get(f"obs/{key}", np.zeros(1, np.int64))
    return is_image(one.shape[1:], one.dtype)


def _pooled(store, key: str) -> np.ndarray:
    """(N, g * g * C) float32: every row's image of ``key`` averaged over a g x g grid of cells
    (g = min(POOL_GRID, H, W); the last rows and columns that do not fill a cell are left out)."""
    n = len(store)
    first = store.get(f"obs/{key}", np.zeros(1, np.int64))
    h, w, c = first.shape[1:]
    g = min(POOL_GRID, h, w)
    fh, fw = h // g, w // g
    out = np.empty((n, g * g * c), np.float32)
    for start in range(0, n, POOL_CHUNK):
        rows = np.arange(start, min(n, start + POOL_CHUNK))
        img = store.get(f"obs/{key}", rows)[:, :g * fh, :g * fw].astype(np.float32)
        out[rows] = img.reshape(len(rows), g, fh, g, fw, c).mean((2, 4)).reshape(len(rows), -1)
    return out


def state_features(store) -> np.ndarray:
    """(N, D) float64 standardized features of every row, the space in which neighbours are found:
    the low-dim observation keys flattened, or, in a file of image keys only, their pooled pixels
    (`_pooled`); never the full images."""
    images = [k for k in store.obs_keys if _is_image(store, k)]
    keys = [k for k in store.obs_keys if k not in images] or images
    n = len(store)
    feats = np.concatenate([_pooled(store, k).astype(np.float64) if k in images else
                            store.get(f"obs/{k}", np.arange(n)).reshape(n, -1).astype(np.float64) for k in keys],
                           axis=1)
    std = feats.std(0)
    return (feats - feats.mean(0)) / np.where(std > 1e-8, std, 1.0)

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
    feats = state_features(store)
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


#: Observation bytes per policy call in `sample_policy` beyond which the batch is made smaller than
#: ``max_batch`` (windows of two 84 x 84 x 3 images: about 400 rows per call).
SAMPLE_BATCH_BYTES = 16 << 20


def sample_policy(policy, qs: QuerySet, samples: int, seed: int = 0, max_batch: int = 4096) -> np.ndarray:
    """``samples`` chunks of ``policy`` at every query: (Q, M, n_act, A), raw units.

    Rows go to the policy in batches of ``max_batch`` (fewer where one row's observations are large,
    i.e. images: at most `SAMPLE_BATCH_BYTES` of observations per call), each query's window
    repeated ``samples`` times, with the observations' own dtypes (uint8 images stay uint8); only the
    keys the policy reads (``policy.obs_keys``) are passed when it names them."""
    import torch

    generator = torch.Generator(device=policy.device).manual_seed(seed)
    n_q = len(qs.rows)
    keys = [k for k in (getattr(policy, "obs_keys", None) or qs.obs) if k in qs.obs]   # what the policy reads
    obs = {k: qs.obs[k] for k in keys}
    row_bytes = sum(v[0].nbytes for v in obs.values())
    if row_bytes * max_batch > SAMPLE_BATCH_BYTES:
        max_batch = max(1, SAMPLE_BATCH_BYTES // max(row_bytes, 1))
    out = []
    for i in range(0, n_q * samples, max_batch):
        which = np.arange(i, min(i + max_batch, n_q * samples)) // samples          # query of each row
        out.append(policy.predict_chunk({k: v[which] for k, v in obs.items()}, generator=generator)[:, :qs.n_act])
    return np.concatenate(out).reshape(n_q, samples, qs.n_act, -1)


def distribution_metrics(samples: np.ndarray, qs: QuerySet) -> dict[str, float]:
    """Mean over queries of energy distance, MMD and coverage between samples (Q, M, n_act, A) and
    the queries' demonstrated actions."""
    x, y = qs.scale(samples), qs.scale(qs.reference)
    per = np.array([(energy_distance(a, b), mmd_rbf(a, b), coverage(a, b)) for a, b in zip(x, y)])
    return {"energy_distance": float(per[:, 0].mean()), "mmd": float(per[:, 1].mean()),
            "coverage": float(per[:, 2].mean())}
