"""Maximum-entropy IRL: soft value iteration against a hand-computed MDP, visitation, the grid world, the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imitate.algos.maxent_irl import (IRLConfig, discounted_visitation, policy_value, run_maxent_irl,
                                      soft_value_iteration)
from imitate.envs import make_env, make_expert
from imitate.errors import ConfigError
from imitate.envs.gridworld import transition_matrix, value_iteration


def two_state_mdp() -> np.ndarray:
    """Action 0 stays, action 1 switches state; deterministic."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[1, 0, 1] = P[0, 1, 1] = P[1, 1, 0] = 1.0
    return P


def test_soft_value_iteration_matches_the_hand_computed_two_state_mdp():
    # r = (1, 0), gamma = 1/2. From either state both successors are reachable, so with
    # L = log(e^{gamma V0} + e^{gamma V1}): V0 = 1 + L, V1 = L, and L = gamma L + log(1 + e^gamma),
    # i.e. L = log(1 + e^gamma) / (1 - gamma); pi(stay | s0) = pi(switch | s1) = sigmoid(gamma).
    gamma = 0.5
    Q, V, pi = soft_value_iteration(two_state_mdp(), np.array([1.0, 0.0]), gamma)
    L = math.log(1 + math.exp(gamma)) / (1 - gamma)
    np.testing.assert_allclose(V, [1 + L, L], atol=1e-9)
    np.testing.assert_allclose(Q, [[1 + gamma * (1 + L), 1 + gamma * L], [gamma * L, gamma * (1 + L)]], atol=1e-9)
    sig = 1 / (1 + math.exp(-gamma))
    np.testing.assert_allclose(pi, [[sig, 1 - sig], [1 - sig, sig]], atol=1e-9)
    np.testing.assert_allclose(pi.sum(1), 1.0)


def test_visitation_and_policy_value_agree_with_hand_computation():
    P, gamma = two_state_mdp(), 0.5
    stay = np.array([[1.0, 0.0], [1.0, 0.0]])
    d = discounted_visitation(P, stay, np.array([0.0, 1.0]), gamma, horizon=60)
    np.testing.assert_allclose(d, [0.0, 2.0], atol=1e-12)  # sum of gamma^t in state 1
    switch = np.array([[0.0, 1.0], [0.0, 1.0]])
    # alternating 1, 0, 1, 0, ... from state 0 with r = (1, 0): 1 / (1 - gamma^2)
    assert policy_value(P, switch, np.array([1.0, 0.0]), np.array([1.0, 0.0]), gamma) == pytest.approx(1 / (1 - gamma**2))


def test_gridworld_dynamics_and_expert():
    P = transition_matrix(8, slip=0.1)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    assert P[0, 0, 0] == pytest.approx(0.9 + 0.05)  # up from the top-left corner: stays (and the slips up/left)
    env = make_env("imitate/GridWorld-v0")
    base = env.unwrapped
    assert base.features.shape == (64, 5) and np.allclose(base.features @ np.array([-0.05, -0.05, -1, 0.5, 1]),
                                                           base.true_reward)
    expert = make_expert("imitate/GridWorld-v0")
    q, _ = value_iteration(base.transition_matrix, base.true_reward, base.gamma)
    assert all(int(expert.act(s)[0]) == int(q[s].argmax()) for s in range(64))
    obs, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(50):
        obs, r, terminated, truncated, _ = env.step(int(expert.act(obs)[0]))
        total += r
    assert truncated and not terminated and total > 20  # reaches the goal corner and stays


def test_boltzmann_expert_samples_its_policy_reproducibly():
    optimal = make_expert("imitate/GridWorld-v0")
    noisy = make_expert("imitate/GridWorld-v0", temperature=0.2, seed=0)
    pi = noisy.policy()
    np.testing.assert_allclose(pi.sum(1), 1.0)
    assert (pi.argmax(1) == optimal.policy().argmax(1)).all() and 0.2 < pi.max(1).mean() < 0.99
    noisy.reset(seed=3)
    draws = [int(noisy.act(20)[0]) for _ in range(2000)]
    noisy.reset(seed=3)
    assert draws[:50] == [int(noisy.act(20)[0]) for _ in range(50)]
    np.testing.assert_allclose(np.bincount(draws, minlength=pi.shape[1]) / 2000, pi[20], atol=0.04)
    with pytest.raises(ConfigError, match="temperature"):
        make_expert("imitate/GridWorld-v0", temperature=-1.0)


def test_maxent_irl_recovers_a_reward_whose_optimal_policy_does_well(tmp_path):
    result = run_maxent_irl(IRLConfig(demos=30, iterations=60, out=str(tmp_path / "irl")))
    # > 0.95 needs the visitation to start from the demos' own first states; from the task's start
    # distribution 30 demos give about 0.85
    assert result["reward_correlation"] > 0.95
    assert result["return_random"] < result["return_recovered_policy"] <= result["return_optimal"] + 1e-9
    assert result["normalized_return"] > 0.9
    saved = json.loads((tmp_path / "irl" / "reward.json").read_text())
    assert len(saved["reward"]) == 64 and saved["result"]["reward_correlation"] == result["reward_correlation"]


def test_cli_irl_prints_json_lines_and_rejects_non_tabular_tasks(capsys):
    from imitate.cli import main

    assert main(["irl", "--task", "imitate/GridWorld-v0", "--demos", "5", "--iterations", "50",
                 "--features", "onehot"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"iteration": 50, "reward_correlation": lines[0]["reward_correlation"]}
    assert "reward_correlation" in lines[-1]["final"]
    assert main(["irl", "--task", "Pendulum-v1"]) == 1
    assert "tabular" in capsys.readouterr().err
