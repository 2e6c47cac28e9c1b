"""PPO for imitate's Policy: running statistics, entropy, and learning on trivial tasks (gaussian and discrete)."""
from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

from imitate.algos.ppo import PPO, PPOConfig, RunningMeanStd, new_rl_policy, normalized_return
from imitate.checkpoint import load_policy

MATCH_ID, PICK_ID = "imitate-test/Match-v0", "imitate-test/Pick-v0"


class MatchEnv(gymnasium.Env):
    """Observe x ~ U(-1, 1); reward -(a - x)^2 (Box) or 1 when the action index is [x > 0] (Discrete); 8 steps."""

    def __init__(self, discrete: bool = False, render_mode=None):
        self.discrete = discrete
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2) if discrete else gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, self.np_random.uniform(-1, 1, (1,)).astype(np.float32)
        return self.x, {}

    def step(self, action):
        if self.discrete:
            reward = float(int(action) == int(self.x[0] > 0))
        else:
            reward = -float((np.asarray(action).reshape(-1)[0] - self.x[0]) ** 2)
        self.t += 1
        self.x = self.np_random.uniform(-1, 1, (1,)).astype(np.float32)
        return self.x, reward, self.t >= 8, False, {}


for env_id, discrete in ((MATCH_ID, False), (PICK_ID, True)):
    if env_id not in gymnasium.registry:
        gymnasium.register(env_id, entry_point=MatchEnv, kwargs={"discrete": discrete})


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(500, 3))
    rms = RunningMeanStd((3,))
    for chunk in np.array_split(data, 7):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-3)


def test_gaussian_entropy_matches_a_monte_carlo_estimate():
    policy = new_rl_policy(3, gymnasium.spaces.Box(-2, 2, (2,)), "gaussian")
    feats = policy.encode({"state": torch.randn(4, 1, 3)})
    exact = policy.head.entropy(feats)
    many = feats.repeat(4000, 1)  # (4000 * B, F)
    with torch.no_grad():
        estimate = -policy.head.log_prob(many, policy.head.sample(many)).view(4000, 4).mean(0)
    torch.testing.assert_close(exact.detach(), estimate, atol=0.1, rtol=0.0)


def mean_return(ppo: PPO, rollouts: int) -> float:
    for _ in range(rollouts):
        ppo.update(ppo.collect())
    return ppo.recent_return(50)


@pytest.mark.parametrize("env_id,head", [(MATCH_ID, "gaussian"), (PICK_ID, "autoregressive")])
def test_ppo_improves_the_return_on_a_trivial_task(env_id, head, tmp_path):
    torch.manual_seed(0)
    env = gymnasium.make(env_id)
    policy = new_rl_policy(1, env.action_space, head)
    cfg = PPOConfig(n_envs=4, n_steps=64, epochs=4, batch_size=64, lr=3e-3, gamma=0.9)
    ppo = PPO(policy, env_id, cfg, seed=0)
    ppo.update(ppo.collect())
    before = ppo.recent_return(50)
    after = mean_return(ppo, 15)
    ppo.close()
    assert math.isfinite(before) and math.isfinite(after)
    if head == "gaussian":  # random: about -5.5 per episode; matching x: close to 0
        assert after > before + 2.0 and after > -1.5, (before, after)
    else:  # random: about 4 of 8 right; learned: nearly all
        assert after > 7.0 and after > before + 2.0, (before, after)


def test_running_observation_statistics_reach_the_saved_policy():
    env = gymnasium.make(MATCH_ID)
    policy = new_rl_policy(1, env.action_space, "gaussian")
    ppo = PPO(policy, MATCH_ID, PPOConfig(n_envs=2, n_steps=64, epochs=1), seed=1)
    ppo.collect()
    ppo.collect()  # statistics of the first rollout are written before the second
    st = policy.normalizer.stats["obs/state"]
    assert abs(float(st.std[0]) - 1 / math.sqrt(3)) < 0.1  # U(-1, 1) has std 0.577
    assert torch.allclose(st.scale * st.std, torch.ones(1))
    ppo.close()


def test_target_kl_stops_the_update_once_the_policy_has_moved_that_far():
    env = gymnasium.make(MATCH_ID)
    counts = {}
    for target in (0.0, 1e-9):
        torch.manual_seed(0)
        policy = new_rl_policy(1, env.action_space, "gaussian")
        ppo = PPO(policy, MATCH_ID, PPOConfig(n_envs=2, n_steps=64, epochs=4, batch_size=32, lr=1e-2, target_kl=target),
                  seed=1)
        info = ppo.update(ppo.collect())
        counts[target] = (info["ppo/minibatches"], info["ppo/early_stop"])
        ppo.close()
    assert counts[0.0] == (16.0, 0.0)  # 4 epochs x 4 minibatches
    assert counts[1e-9] == (1.0, 1.0)  # the first step moves the policy, the second minibatch sees it


def test_the_generator_must_act_one_step_at_a_time():
    from imitate.errors import ConfigError
    env = gymnasium.make(MATCH_ID)
    policy = new_rl_policy(1, env.action_space, "gaussian")
    policy.action_horizon = 2
    with pytest.raises(ConfigError, match="action_horizon"):
        PPO(policy, MATCH_ID, PPOConfig(n_envs=1, n_steps=4))


def test_normalized_return():
    assert normalized_return(-150.0, -1200.0, -150.0) == 1.0
    assert normalized_return(-1200.0, -1200.0, -150.0) == 0.0
    assert normalized_return(None, 0.0, 1.0) is None


def test_rl_run_dir_loads_with_load_policy(tmp_path):
    from imitate.algos.rl_loop import train_rl

    lines = []
    final = train_rl(MATCH_ID, tmp_path / "run", "gaussian", steps=256, seed=0, progress=False, log_every=128,
                     ppo_overrides={"n_envs": 2, "n_steps": 64, "epochs": 1}, expert_return=0.0, eval_episodes=2,
                     on_log=lines.append)
    assert final["env_steps"] == 256 and math.isfinite(final["eval_return"])
    assert [r["env_steps"] for r in lines] == [128, 256]
    assert all({"env_steps", "return", "normalized_return"} <= set(r) for r in lines)
    policy = load_policy(tmp_path / "run")
    assert policy.act(np.zeros(1, np.float32)).shape == (1,)
    assert (tmp_path / "run" / "tb").is_dir() and (tmp_path / "run" / "metrics.jsonl").exists()
