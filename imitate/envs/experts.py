"""Scripted experts that label any state of the tasks they know.

An expert chooses its per-episode behaviour (a route, waypoint jitter, noise) in ``reset`` and
afterwards answers from the current observation alone, so DAgger can query it on states that a
learner visits and the expert never saw.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from imitate.envs.block_push_expert import BlockPushExpert
from imitate.envs.draw import VIEW_KWARGS
from imitate.envs.forked_path import ForkedPathGeometry
from imitate.envs.reacher_modes import ReacherModesExpert
from imitate.errors import ConfigError, ImitateError


class UnknownEnvError(ImitateError, ValueError):
    """An environment id that gymnasium or the expert table does not know."""


@runtime_checkable
class Expert(Protocol):
    """A scripted demonstrator for one environment."""

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: draw the per-episode choices, re-seeding when ``seed`` is given."""

    def act(self, obs: Any) -> np.ndarray:
        """The action for ``obs``, exactly as the environment returns it (dict or array) with
        ``obs_mode="state"``; `expert_view` gives it in the other modes."""


def expert_view(env, obs: Any) -> Any:
    """What a scripted expert reads at the current step of ``env``: the task's state observation
    (``env.unwrapped.state_obs()``) where the task has one, so that an expert labels from the state
    while the observation holds only pixels (``obs_mode="image"``); ``obs`` itself otherwise.

    Call it right after ``reset`` or ``step`` returned ``obs``: it reads the environment's current
    state. With ``obs_mode="state"`` it equals ``obs``."""
    state = getattr(env.unwrapped, "state_obs", None)
    return state() if state is not None else obs


class ForkedPathExpert:
    """Goes around the barrier of ``imitate/ForkedPath-v0`` through a passage drawn per episode.

    Per episode (``reset``): the route (left with probability ``p_left`` when there are two
    passages, ``route_probs`` otherwise), a cruise speed, and small offsets of the two waypoints,
    one below the chosen passage and one above it (sideways offsets and the alignment tolerance
    shrink in proportion with passages narrower than the default 0.4). Every action adds
    Ornstein-Uhlenbeck noise (temporally correlated) of standard deviation ``noise`` per axis
    before clipping to [-1, 1].

    The target waypoint follows from the agent's position alone:

        above the barrier                                  -> the goal
        at the barrier's level, inside a passage           -> the waypoint above that passage
                                                              (the route is committed there)
        below the fork height (the shared stem)            -> the fork point, under the barrier's
                                                              centre, whatever the route
        between the fork and the barrier, not lined up     -> the waypoint below the passage
        between the fork and the barrier, lined up         -> the waypoint above the passage

    Every route starts with the same stem, straight up towards the middle of the barrier, and
    turns only at the fork: there the demonstrations disagree, and the mean of their actions points
    straight into the block between the passages. A policy must choose; averaging crashes.

    Args:
        p_left: probability of the left passage (only with ``n_routes=2``).
        noise: standard deviation of the action noise per axis; 0 gives clean labels.
        env_kwargs: the kwargs given to ``gym.make`` for the environment (``n_routes``), so that
            expert and environment share one geometry (``obs_mode``, ``image_size`` and ``reward`` are
            accepted and ignored: the expert reads the state, see `expert_view`).
        route_probs: probability of each passage, left to right; defaults to ``p_left`` for two
            passages and to uniform for more.
        seed: seeds the expert's generator; ``reset(seed)`` re-seeds it.
        follow_agent: for labelling states that a learner visits (DAgger): once the agent, past the
            fork, has moved more than ``COMMIT_DX`` sideways from it, the expert switches to the
            passage nearest to the agent (keeping its per-episode offsets) instead of steering back
            across the block towards the passage it drew at reset.
    """

    NOISE_CORRELATION = 0.85
    ALIGN_TOLERANCE = 0.05
    ENTRY_DEPTH = 0.12
    EXIT_HEIGHT = 0.1
    FORK_Y = -0.45
    COMMIT_DX = 0.08

    def __init__(
        self,
        p_left: float = 0.5,
        noise: float = 0.1,
        env_kwargs: dict | None = None,
        route_probs: list[float] | None = None,
        seed: int | None = None,
        follow_agent: bool = False,
    ):
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("render_mode", "reward", *VIEW_KWARGS)}
        unknown = sorted(set(env_kwargs) - {"n_routes", "gap_width", "action_noise"})
        if unknown:
            raise ValueError(
                f"ForkedPathExpert: env_kwargs {unknown} are not ForkedPath-v0 arguments "
                "(known: ['action_noise', 'gap_width', 'image_size', 'n_routes', 'obs_mode', 'reward'])"
            )
        geometry_kwargs = {k: v for k, v in env_kwargs.items() if k != "action_noise"}
        if "gap_width" in geometry_kwargs:
            geometry_kwargs["gap_width"] = float(geometry_kwargs["gap_width"])
        self.geometry = ForkedPathGeometry(**geometry_kwargs)
        # sideways offsets and the alignment tolerance shrink with passages narrower than the default
        self._narrow = min(1.0, self.geometry.gap_width / ForkedPathGeometry.gap_width)
        n_routes = self.geometry.n_routes
        if route_probs is None:
            if n_routes == 2:
                route_probs = [p_left, 1.0 - p_left]
            elif p_left != 0.5:
                raise ValueError(
                    f"ForkedPathExpert: p_left applies to n_routes=2 only "
                    f"(got n_routes={n_routes}); give route_probs instead"
                )
            else:
                route_probs = [1.0 / n_routes] * n_routes
        probs = np.asarray(route_probs, dtype=np.float64)
        if probs.shape != (n_routes,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise ValueError(
                f"ForkedPathExpert: route_probs={list(route_probs)} must hold {n_routes} "
                "non-negative numbers summing to 1 (p_left must lie in [0, 1])"
            )
        if noise < 0:
            raise ValueError(f"ForkedPathExpert: noise={noise} must be >= 0")
        self.route_probs = probs
        self.noise = float(noise)
        self.follow_agent = bool(follow_agent)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        geo, rng = self.geometry, self._rng
        self.route_index = int(rng.choice(geo.n_routes, p=self.route_probs))
        self.route = geo.route_names[self.route_index]
        self.speed = float(rng.uniform(0.75, 0.95))
        gx = geo.gap_centers[self.route_index]
        h = geo.barrier_half_height
        narrow = self._narrow
        self.entry = np.array(
            [
                gx + rng.uniform(-0.03 * narrow, 0.03 * narrow),
                -h - self.ENTRY_DEPTH + rng.uniform(-0.04, 0.04),
            ]
        )
        self.exit_offset = float(rng.uniform(-0.03 * narrow, 0.03 * narrow))
        self.fork = np.array([geo.start_center[0] + rng.uniform(-0.03, 0.03), self.FORK_Y])
        self._noise_state = np.zeros(2)
        self._start: np.ndarray | None = None

    def _follow(self, pos: np.ndarray) -> None:
        """Switch to the passage nearest to ``pos`` once the agent has left the stem past the fork."""
        if pos[1] < self.fork[1] or abs(pos[0] - self.fork[0]) <= self.COMMIT_DX:
            return
        geo = self.geometry
        index = geo.route_of(pos[0])
        if index != self.route_index:
            self.entry[0] += geo.gap_centers[index] - geo.gap_centers[self.route_index]
            self.route_index, self.route = index, geo.route_names[index]

    def route_deviation(self, obs: dict[str, np.ndarray]) -> float:
        """Distance from the agent to the path this expert would drive in this episode: the polyline
        start -> fork -> below the passage -> above the passage -> goal (start: the first position
        seen since ``reset``)."""
        pos = np.asarray(obs["agent_pos"], dtype=np.float64)
        goal = np.asarray(obs["goal_pos"], dtype=np.float64)
        if self._start is None:
            self._start = pos.copy()
        if self.follow_agent:
            self._follow(pos)
        exit_y = self.geometry.barrier_half_height + self.EXIT_HEIGHT
        points = [self._start, self.fork + np.array([0.0, 0.05]), self.entry,
                  np.array([self.entry[0] + self.exit_offset, exit_y]), goal]
        best = np.inf
        for a, b in zip(points[:-1], points[1:]):
            ab = b - a
            t = np.clip(np.dot(pos - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
            best = min(best, float(np.linalg.norm(pos - (a + t * ab))))
        return best

    def _target(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        geo = self.geometry
        band = geo.barrier_half_height + geo.agent_radius + 0.03
        exit_y = geo.barrier_half_height + self.EXIT_HEIGHT
        nearest = geo.gap_centers[geo.route_of(pos[0])]
        in_passage = abs(pos[0] - nearest) <= 0.5 * geo.gap_width - geo.agent_radius
        if pos[1] > band or (pos[1] > 0 and not in_passage):
            return goal
        if pos[1] >= -band and in_passage:
            return np.array([nearest + self.exit_offset, exit_y])
        if pos[1] < self.fork[1]:
            return self.fork + np.array([0.0, 0.05])  # aim just past the fork so the stem ends cleanly
        if abs(pos[0] - self.entry[0]) > self.ALIGN_TOLERANCE * self._narrow:
            return self.entry
        return np.array([self.entry[0] + self.exit_offset, exit_y])

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action (2,) float32 for ``obs`` with keys ``agent_pos`` (2,) and ``goal_pos`` (2,)."""
        pos = np.asarray(obs["agent_pos"], dtype=np.float64)
        goal = np.asarray(obs["goal_pos"], dtype=np.float64)
        if self._start is None:
            self._start = pos.copy()
        if self.follow_agent:
            self._follow(pos)
        delta = self._target(pos, goal) - pos
        dist = float(np.linalg.norm(delta))
        command = delta / dist * self.speed if dist > 1e-9 else np.zeros(2)
        if self.noise > 0:
            rho = self.NOISE_CORRELATION
            fresh = self._rng.normal(0.0, self.noise, 2)
            self._noise_state = rho * self._noise_state + np.sqrt(1 - rho**2) * fresh
            command = command + self._noise_state
        return np.clip(command, -1.0, 1.0).astype(np.float32)


class ForkedPath3Expert(ForkedPathExpert):
    """:class:`ForkedPathExpert` for ``imitate/ForkedPath3-v0``: three passages unless ``env_kwargs``
    says otherwise; route probabilities uniform (``route_probs`` to change them)."""

    def __init__(self, noise: float = 0.1, env_kwargs: dict | None = None,
                 route_probs: list[float] | None = None, seed: int | None = None, follow_agent: bool = False):
        env_kwargs = {"n_routes": 3, **(env_kwargs or {})}
        super().__init__(noise=noise, env_kwargs=env_kwargs, route_probs=route_probs, seed=seed,
                         follow_agent=follow_agent)


class PendulumExpert:
    """Swings ``Pendulum-v1`` up by pumping energy, then balances it with a PD law near the top.

    With θ measured from upright, the dynamics are θ'' = a sin θ + b u with a = 3g/2 and b = 3
    (unit mass and length). The energy E = θ'²/2 + a (cos θ - 1) is 0 at rest upright and changes
    as E' = b u θ', so the swing-up pushes with full torque along θ' while E < 0 and brakes when
    E > 0. Within ``BALANCE_ANGLE`` of the top, with E > ``BALANCE_ENERGY``,
    u = -(KP θ + KD θ') clipped to [-2, 2].

    Args:
        env_kwargs: the kwargs given to ``gym.make("Pendulum-v1", ...)``; only ``g`` matters.
    """

    MAX_TORQUE = 2.0
    BALANCE_ANGLE = 0.5
    BALANCE_ENERGY = -2.0
    KP = 12.0
    KD = 2.5

    def __init__(self, env_kwargs: dict | None = None):
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"}
        unknown = sorted(set(env_kwargs) - {"g"})
        if unknown:
            raise ValueError(
                f"PendulumExpert: env_kwargs {unknown} are not Pendulum-v1 arguments (known: ['g'])"
            )
        self.a = 1.5 * float(env_kwargs.get("g", 10.0))

    def reset(self, seed: int | None = None) -> None:
        """The controller has no per-episode choices."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Torque (1,) float32 for ``obs`` = [cos θ, sin θ, θ'] (3,)."""
        cos_t, sin_t, theta_dot = (float(v) for v in np.asarray(obs).reshape(3))
        theta = np.arctan2(sin_t, cos_t)
        energy = 0.5 * theta_dot**2 + self.a * (cos_t - 1.0)
        if abs(theta) < self.BALANCE_ANGLE and energy > self.BALANCE_ENERGY:
            u = -(self.KP * theta + self.KD * theta_dot)
        elif energy < 0:
            u = self.MAX_TORQUE * (np.sign(theta_dot) if abs(theta_dot) > 1e-3 else 1.0)
        else:
            u = -self.MAX_TORQUE * np.sign(theta_dot) * min(1.0, energy)
        return np.array([np.clip(u, -self.MAX_TORQUE, self.MAX_TORQUE)], dtype=np.float32)


from imitate.envs.cartpole_expert import CartPoleExpert  # noqa: E402
from imitate.envs.gridworld import GridWorldExpert  # noqa: E402

EXPERTS: dict[str, type] = {
    "imitate/ForkedPath-v0": ForkedPathExpert,
    "imitate/ForkedPath3-v0": ForkedPath3Expert,
    "imitate/ReacherModes-v0": ReacherModesExpert,
    "imitate/BlockPush-v0": BlockPushExpert,
    "Pendulum-v1": PendulumExpert,
    "CartPole-v1": CartPoleExpert,
    "imitate/GridWorld-v0": GridWorldExpert,
}

#: Expert settings for labelling states a learner visits (DAgger): clean, consistent labels.
LABEL_SETTINGS: dict[str, dict[str, Any]] = {
    "imitate/ForkedPath-v0": {"noise": 0.0, "follow_agent": True},
    "imitate/ForkedPath3-v0": {"noise": 0.0, "follow_agent": True},
}


def make_expert(env_id: str, **kwargs) -> Expert:
    """The scripted expert for ``env_id``, built with ``kwargs``: ``env_kwargs`` (the dict given to
    ``gym.make``) and the expert's own settings (ForkedPath: ``p_left``, ``noise``,
    ``route_probs``, ``seed``, ``follow_agent``; ReacherModes: ``p_elbow_up``, ``noise``, ``seed``; BlockPush:
    ``noise``, ``mode_probs``, ``seed``).

    Raises:
        UnknownEnvError: ``env_id`` has no expert; the message lists those that do.
        ConfigError: the expert does not take one of ``kwargs`` or rejects its value.
    """
    if env_id not in EXPERTS:
        raise UnknownEnvError(f"no scripted expert for env id {env_id!r}; known: {sorted(EXPERTS)}")
    cls = EXPERTS[env_id]
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"expert for {env_id!r} ({cls.__name__}) rejected {sorted(kwargs)}: {err}"
        ) from err
