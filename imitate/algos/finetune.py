"""Demonstrations inside online RL: PPO from a BC run, the DAPG term, start states from demonstrations.

    imitate rl --init BC_RUN [--demos FILE --demo-coef C --demo-decay D] [--start-states FILE
               --curriculum reverse|uniform] --out DIR

BC warm start (``--init``): the BC run's policy (EMA weights, head, encoder and observation normalizer)
is PPO's generator as it is; the normalizer stays frozen (``obs_stats="frozen"``), so the first
rollout acts exactly as the BC policy does. The value network starts from scratch, so before the
first policy update `FinetunePPO.warm_up_value` fits it alone on ``value_warmup`` rollouts of the BC
policy (their environment steps count): the first advantages then measure the BC policy's own
returns instead of a random baseline's, and early updates do not pull the policy away from BC at
random.

DAPG term (Rajeswaran et al. 2018): every PPO minibatch adds ``C * D^k * L_BC`` with ``L_BC`` the
head's own BC loss (`Policy.compute_loss`, the negative log-likelihood BC minimized: -mean log
pi(a|s) per row for the mixture head, per action dimension for the gaussian head) on a fresh batch
of demonstration rows, and k the number of PPO updates so far. Heads without a log-probability
(diffusion, flow) cannot be trained by PPO here: their policy gradient over the denoising chain
(DPPO) is not implemented.

Start states (``--start-states``): the file's per-step ``states`` (`imitate collect` writes each
task's `sim_state`; the tasks take ``reset(options={"state": s})``). `StartStates` decides every
reset: with probability ``start_share * (1 - env_steps / steps)`` a demonstration state, else the
task's own start. ``uniform`` draws any step of any demo; ``reverse`` draws steps ``back`` steps
before a demo's end (within the last ``reverse_step``), and moves ``back`` by ``reverse_step`` each
time the episodes started there succeed at ``reverse_success`` or more over ``reverse_window``
episodes, so the learner first solves the last steps (Salimans & Chen 2018; Florensa et al. 2017).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from imitate.algos.ppo import PPO
from imitate.errors import ConfigError, DemoFileError, ImitateError
from imitate.settings import PPOConfig, RLDemoConfig

CURRICULA = ("reverse", "uniform")


def check_demo_config(cfg: RLDemoConfig) -> None:
    """Errors for settings that cannot work, naming the flag."""
    if cfg.demo_coef < 0:
        raise ConfigError(f"--demo-coef must be >= 0 (got {cfg.demo_coef})")
    if cfg.demo_coef > 0 and not cfg.demos:
        raise ConfigError("--demo-coef needs --demos FILE (the demonstrations of the DAPG term)")
    if not 0 < cfg.demo_decay <= 1:
        raise ConfigError(f"--demo-decay must lie in (0, 1] (got {cfg.demo_decay})")
    if cfg.demo_batch < 1 or cfg.value_warmup < 0 or cfg.value_warmup_epochs < 1:
        raise ConfigError(f"--demo-batch and --value-warmup-epochs must be >= 1, --value-warmup >= 0 (got "
                          f"{cfg.demo_batch}, {cfg.value_warmup_epochs}, {cfg.value_warmup})")
    if cfg.curriculum not in CURRICULA:
        raise ConfigError(f"--curriculum {cfg.curriculum!r}: choose {' or '.join(CURRICULA)}")
    if not 0 <= cfg.start_share <= 1:
        raise ConfigError(f"--start-share must lie in [0, 1] (got {cfg.start_share})")
    if cfg.reverse_step < 1 or cfg.reverse_window < 1 or not 0 < cfg.reverse_success <= 1:
        raise ConfigError(f"--reverse-step and --reverse-window must be >= 1 and --reverse-success in (0, 1] (got "
                          f"{cfg.reverse_step}, {cfg.reverse_window}, {cfg.reverse_success})")
    if cfg.eval_every < 0:
        raise ConfigError(f"--eval-every must be >= 0 (got {cfg.eval_every})")


def load_init_policy(run_dir: str):
    """The BC run's policy for PPO: any head with a log-probability, horizons 1, low-dim keys only."""
    from imitate.checkpoint import load_policy

    policy = load_policy(run_dir)
    head = policy.head
    if not head.has_log_prob:
        raise ConfigError(f"--init {run_dir}: its {head.name!r} head has no log-probability, which PPO needs; its "
                          f"policy-gradient variant over the denoising chain (DPPO) is not implemented here. "
                          f"Fine-tune a gaussian, gmm or autoregressive run instead")
    if (policy.obs_horizon, policy.action_horizon, policy.n_act) != (1, 1, 1):
        raise ConfigError(f"--init {run_dir}: PPO acts one step at a time, the run has obs_horizon "
                          f"{policy.obs_horizon}, action_horizon {policy.action_horizon}, n_act {policy.n_act}; "
                          f"train it with --obs-horizon 1 --action-horizon 1 --n-act 1")
    if policy.image_keys:
        raise ConfigError(f"--init {run_dir}: the policy reads camera keys {policy.image_keys}; PPO here takes "
                          f"low-dim observations only")
    return policy


# -- the DAPG term and the value warm-up -------------------------------------------------------------


class DemoRows:
    """Every row of a demonstration file as tensors: obs {key: (E, *shape)} and raw actions (E, A)."""

    def __init__(self, path: str, obs_keys: list[str], obs_shapes: dict[str, tuple[int, ...]]):
        from imitate.data import load_demo_file

        store = load_demo_file(path)
        missing = sorted(set(obs_keys) - set(store.obs_keys))
        if missing:
            raise DemoFileError(f"--demos {path}: the policy reads obs keys {missing} the file lacks (it has "
                                f"{store.obs_keys})")
        rows = np.arange(len(store))
        self.obs = {k: torch.as_tensor(np.asarray(store.get(f"obs/{k}", rows)), dtype=torch.float32) for k in obs_keys}
        for k in obs_keys:
            if tuple(self.obs[k].shape[1:]) != tuple(obs_shapes[k]):
                raise DemoFileError(f"--demos {path}: obs/{k} has shape {tuple(self.obs[k].shape[1:])} per step; the "
                                    f"policy reads {tuple(obs_shapes[k])}")
        self.actions = torch.as_tensor(np.asarray(store.get("actions", rows)), dtype=torch.float32)
        if self.actions.ndim == 1:
            self.actions = self.actions[:, None]
        store.close() if hasattr(store, "close") else None
        self.path = path

    def __len__(self) -> int:
        return len(self.actions)

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Rows ``idx`` as a BC batch: obs {key: (B, 1, *shape)}, actions (B, 1, A)."""
        return {k: v[idx].unsqueeze(1) for k, v in self.obs.items()}, self.actions[idx].unsqueeze(1)


class FinetunePPO(PPO):
    """PPO with the DAPG demonstration term and a value warm-up (see the module docstring)."""

    def __init__(self, *args, demos: DemoRows | None = None, demo_coef: float = 0.0, demo_decay: float = 1.0,
                 demo_batch: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        if demos is not None and self.policy.action_dim != demos.actions.shape[1]:
            raise DemoFileError(f"--demos {demos.path}: actions of size {demos.actions.shape[1]}; the policy acts with "
                                f"{self.policy.action_dim}")
        self.demos, self.demo_coef, self.demo_decay, self.demo_batch = demos, demo_coef, demo_decay, demo_batch

    def demo_weight(self) -> float:
        """C * D^k, k the PPO updates so far."""
        return self.demo_coef * self.demo_decay ** self.updates

    def demo_term(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C * D^k * L_BC, L_BC) on the demonstration rows ``idx``."""
        obs, actions = self.demos.batch(idx)
        bc_loss, _ = self.policy.compute_loss(obs, actions)
        return self.demo_weight() * bc_loss, bc_loss

    def extra_loss(self):
        if self.demos is None or self.demo_coef == 0:
            return None
        idx = torch.randint(len(self.demos), (min(self.demo_batch, len(self.demos)),), generator=self.generator)
        term, bc_loss = self.demo_term(idx)
        return term, {"demo_bc_loss": bc_loss.detach(), "demo_weight": torch.tensor(self.demo_weight())}

    def warm_up_value(self, rollouts: int, epochs: int) -> dict[str, float]:
        """Fit the value network alone on ``rollouts`` rollouts of the current policy (``epochs`` passes over
        each, the PPO minibatch size, Adam at PPO's learning rate); the policy is not changed."""
        from imitate.optim import make_optimizer

        optimizer = make_optimizer(list(self.value.parameters()), self.cfg.lr, kind="adam", eps=1e-5)
        first = last = float("nan")
        for _ in range(rollouts):
            buf = self.collect()
            _, returns = self.advantages(buf, buf["env_reward"])
            obs, returns = buf["obs"].flatten(0, 1), returns.flatten()
            for epoch in range(epochs):
                order = torch.randperm(len(returns), generator=self.generator)
                total, n = 0.0, 0
                for start in range(0, len(order), self.cfg.batch_size):
                    idx = order[start:start + self.cfg.batch_size]
                    loss = (self.values(obs[idx]) - returns[idx]).square().mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total, n = total + float(loss.detach()), n + 1
                if epoch == 0 and first != first:
                    first = total / n
                last = total / n
        return {"value_warmup/first_loss": first, "value_warmup/last_loss": last,
                "value_warmup/env_steps": float(self.env_steps)}


# -- start states ----------------------------------------------------------------------------------------


def load_start_states(path: str) -> list[np.ndarray]:
    """Each demo's ``states`` (T, S) of a demonstration file, in file order; errors name file and demo."""
    from imitate.data.hdf5 import open_demo_file

    out = []
    try:
        with open_demo_file(path) as f:
            if "data" not in f:
                raise DemoFileError(f"--start-states {path}: no 'data' group (not a robomimic-layout demo file)")
            names = sorted(f["data"].keys(), key=lambda n: (len(n), n))
            for name in names:
                g = f["data"][name]
                if "states" not in g:
                    raise DemoFileError(f"--start-states {path}: data/{name} has no 'states' (record the demos with "
                                        f"imitate collect, which writes them for imitate's tasks)")
                states = np.asarray(g["states"][()], dtype=np.float64)
                if states.ndim != 2 or len(states) == 0 or not np.all(np.isfinite(states)):
                    raise DemoFileError(f"--start-states {path}: data/{name}/states must be a non-empty (T, S) array "
                                        f"of finite numbers (got shape {states.shape})")
                out.append(states)
    except OSError as e:
        raise DemoFileError(f"--start-states {path}: cannot read it as HDF5 ({e})") from None
    if not out:
        raise DemoFileError(f"--start-states {path}: the file holds no demos")
    if len({s.shape[1] for s in out}) != 1:
        raise DemoFileError(f"--start-states {path}: demos store states of different sizes {sorted({s.shape[1] for s in out})}")
    return out


class StartStates:
    """Which state each new episode starts from (shared by every environment of the vector env).

    ``draw()`` returns a stored state, or None for the task's own start; ``report(success, level)`` is
    told how an episode started at a stored state ended. ``env_steps`` is counted by the wrappers.
    """

    def __init__(self, states: list[np.ndarray], curriculum: str, total_steps: int, share: float = 1.0,
                 step: int = 5, success: float = 0.6, window: int = 20, seed: int = 0):
        if curriculum not in CURRICULA:
            raise ConfigError(f"--curriculum {curriculum!r}: choose {' or '.join(CURRICULA)}")
        self.states, self.curriculum, self.total, self.share = states, curriculum, max(1, total_steps), share
        self.step, self.success, self.window = step, success, window
        self.rng = np.random.default_rng([seed, 7])
        self.back = step                          # reverse: start this many steps before a demo's end (at most)
        self.longest = max(len(s) for s in states)
        self.results: list[bool] = []             # successes at the current level
        self.env_steps = 0
        self.moves: list[tuple[int, int]] = []    # (env steps, new back) each time the start point moved
        self.demo_starts = self.own_starts = 0

    def demo_probability(self) -> float:
        return self.share * max(0.0, 1.0 - self.env_steps / self.total)

    def draw(self) -> tuple[np.ndarray | None, int | None]:
        """(state, level) for the next episode: a stored state and the curriculum level it was drawn at,
        or (None, None) for the task's own start."""
        if self.rng.random() >= self.demo_probability():
            self.own_starts += 1
            return None, None
        self.demo_starts += 1
        demo = self.states[int(self.rng.integers(len(self.states)))]
        if self.curriculum == "uniform":
            return demo[int(self.rng.integers(len(demo)))], None
        lo = max(1, self.back - self.step + 1)
        back = int(self.rng.integers(lo, self.back + 1))
        return demo[max(0, len(demo) - back)], self.back

    def report(self, success: bool, level: int | None) -> None:
        """An episode started at reverse level ``level`` ended; move the start point back when the
        episodes at the current level succeed often enough."""
        if self.curriculum != "reverse" or level != self.back or self.back >= self.longest:
            return
        self.results.append(bool(success))
        recent = self.results[-self.window:]
        if len(recent) >= self.window and np.mean(recent) >= self.success:
            self.back = min(self.back + self.step, self.longest)
            self.results = []
            self.moves.append((self.env_steps, self.back))

    def summary(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum, "back": self.back, "longest_demo": self.longest,
                "demo_starts": self.demo_starts, "own_starts": self.own_starts, "moves": self.moves}


class StartStateWrapper(gymnasium.Wrapper):
    """Resets its environment into the states `StartStates` draws (``reset(options={"state": ...})``),
    counts environment steps for it and reports how episodes started at a stored state ended."""

    def __init__(self, env: gymnasium.Env, starts: StartStates):
        super().__init__(env)
        self.starts, self.level, self.from_demo = starts, None, False

    def reset(self, *, seed=None, options=None):
        state, self.level = self.starts.draw()
        self.from_demo = state is not None
        if state is not None:
            options = {**(options or {}), "state": state}
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.starts.env_steps += 1
        if (terminated or truncated) and self.from_demo:
            self.starts.report(bool(info.get("is_success", False)), self.level)
        return obs, reward, terminated, truncated, info


def check_start_states(env_id: str, env_kwargs: dict | None, states: list[np.ndarray], path: str) -> None:
    """The task must take ``reset(options={"state": ...})`` with the file's states."""
    from imitate.envs import make_env

    env = make_env(env_id, env_kwargs)
    try:
        env.reset(seed=0, options={"state": states[0][0]})
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"--start-states {path}: {env_id} cannot be reset into the file's states ({e})") from None
    finally:
        env.close()
    if not hasattr(env.unwrapped, "sim_state"):
        raise ConfigError(f"--start-states {path}: {env_id} has no stored-state reset (sim_state); imitate's own tasks "
                          f"have one")


# -- the run ---------------------------------------------------------------------------------------------------


def demo_kwargs(cfg: RLDemoConfig, policy) -> dict[str, Any]:
    """FinetunePPO's demonstration settings from ``cfg`` (the demo file loaded for the policy's keys)."""
    if not cfg.demos or cfg.demo_coef == 0:
        return {}
    return {"demos": DemoRows(cfg.demos, policy.obs_keys, policy.obs_shapes), "demo_coef": cfg.demo_coef,
            "demo_decay": cfg.demo_decay, "demo_batch": cfg.demo_batch}


def make_ppo(policy, env_id: str, env_kwargs: dict | None, ppo_cfg: PPOConfig, cfg: RLDemoConfig, steps: int,
             seed: int, obs_stats: str) -> tuple[FinetunePPO, StartStates | None]:
    """The PPO of `imitate rl` with every demonstration setting of ``cfg`` applied."""
    starts = None
    wrap = None
    if cfg.start_states:
        states = load_start_states(cfg.start_states)
        check_start_states(env_id, env_kwargs, states, cfg.start_states)
        starts = StartStates(states, cfg.curriculum, steps, cfg.start_share, cfg.reverse_step, cfg.reverse_success,
                             cfg.reverse_window, seed)
        wrap = lambda env: StartStateWrapper(env, starts)  # noqa: E731
    ppo = FinetunePPO(policy, env_id, ppo_cfg, env_kwargs, obs_stats=obs_stats, seed=seed, wrap=wrap,
                      **demo_kwargs(cfg, policy))
    return ppo, starts


def init_task(run_dir: str, env: str | None) -> tuple[str, dict | None]:
    """The task of a BC run (its data's env_args), or ``env`` when given."""
    from imitate.checkpoint import read_run_config
    from imitate.envs import task_of

    config = read_run_config(run_dir)
    env_id, env_kwargs = task_of(config.get("data", {}).get("env_args"), env)
    if not env_id:
        raise ImitateError(f"--init {run_dir}: its data names no environment imitate can build; pass --env ENV_ID")
    return env_id, env_kwargs


def bc_path(path: str | Path) -> str:
    return str(Path(path).resolve())
