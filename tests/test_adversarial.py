"""GAIL and AIRL with imitate's heads: finite losses, a discriminator that separates expert from random
data, the reward artifact, BC warm start, the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imitate.algos.airl import AIRLDiscriminator, state_reward, train_airl
from imitate.algos.gail import GAILDiscriminator, train_gail
from imitate.algos.adversarial import AdversarialConfig, action_features, load_expert, train_discriminator
from imitate.algos.state_reward import load_reward, save_reward
from imitate.checkpoint import load_policy
from imitate.errors import ConfigError, ImitateError

TINY_PPO = {"n_envs": 2, "n_steps": 64, "epochs": 1, "batch_size": 64}
TINY_HEADS = {"gaussian": {"hidden_dims": "16"}, "autoregressive": {"d_model": "16", "num_heads": "2"}}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from imitate.collect import collect

    root = tmp_path_factory.mktemp("demos")
    collect("Pendulum-v1", 2, root / "pendulum.hdf5", progress=False)
    collect("CartPole-v1", 1, root / "cartpole.hdf5", progress=False, valid_fraction=0.0)
    return root


def tiny(data, out, **kw):
    settings = dict(data=str(data), out=str(out), steps=256, log_every=128, eval_episodes=1, disc_hidden=(16,))
    settings.update(kw)
    return AdversarialConfig(**settings)


@pytest.mark.parametrize("train,env,head", [(train_gail, "pendulum", "gaussian"), (train_airl, "pendulum", "gaussian"),
                                            (train_gail, "cartpole", "autoregressive"),
                                            (train_airl, "cartpole", "autoregressive")])
def test_a_tiny_run_has_finite_losses_and_loads(demos, tmp_path, train, env, head):
    lines = []
    final = train(tiny(demos / f"{env}.hdf5", tmp_path / "run", head=head, grad_penalty=1.0), TINY_PPO,
                  TINY_HEADS[head], progress=False, on_log=lines.append)
    assert final["env_steps"] == 256 and math.isfinite(final["eval_return"])
    assert [r["env_steps"] for r in lines] == [128, 256]
    for record in lines:
        losses = {k: v for k, v in record.items() if k.startswith(("disc/", "ppo/"))}
        assert {"disc/loss", "disc/grad_penalty", "ppo/policy_loss", "ppo/value_loss"} <= set(losses)
        assert all(math.isfinite(v) for v in losses.values()), losses
        assert record["normalized_return"] is None or math.isfinite(record["normalized_return"])
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["returns"]["expert"] == pytest.approx(500.0 if env == "cartpole" else config["returns"]["expert"])
    policy = load_policy(run)  # the generator is an ordinary Policy: `imitate eval` works on it
    assert (policy.obs_horizon, policy.action_horizon, policy.head.name) == (1, 1, head)
    assert (run / "discriminator.safetensors").exists() and (run / "tb").is_dir()
    assert (run / "reward.json").exists() == (train is train_airl)
    if train is train_gail:  # the generator exports like any BC run: same noise, same actions
        from imitate.export.exporter import export_run
        from imitate.export.runtime import load

        export_run(run, tmp_path / "export", ["onnx"])
        obs = {"state": np.random.default_rng(0).normal(size=(3, 1, policy.obs_shapes["state"][0])).astype(np.float32)}
        noise = policy.head.draw_noise(3, torch.Generator().manual_seed(0))
        eager = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
        got = load(tmp_path / "export", "onnx").predict_chunk(obs, noise={k: v.numpy() for k, v in noise.items()})
        np.testing.assert_allclose(got, eager, atol=1e-4, rtol=0)


def test_the_discriminator_separates_expert_from_random_data(demos):
    torch.manual_seed(0)
    expert, _ = load_expert(str(demos / "pendulum.hdf5"))
    obs = (expert["obs"] - expert["obs"].mean(0)) / expert["obs"].std(0)
    act = (expert["actions"] / 2.0).clamp(-1, 1)  # Pendulum torque in [-2, 2] -> [-1, 1]
    gen = torch.Generator().manual_seed(0)

    def batch(rows, actions):
        return {"obs": obs[rows], "act": actions, "next_obs": obs[rows], "terminated": torch.zeros(len(rows)),
                "log_pi": torch.zeros(len(rows))}

    def sample_expert(n):
        rows = torch.randint(len(obs), (n,), generator=gen)
        return batch(rows, act[rows])

    disc = GAILDiscriminator(3, 1, (32, 32))
    optimizer = torch.optim.Adam(disc.parameters(), lr=3e-3)
    cfg = AdversarialConfig(disc_batch=128, disc_epochs=1)
    random_rows = torch.randint(len(obs), (2048,), generator=gen)
    random = batch(random_rows, torch.rand(2048, 1, generator=gen) * 2 - 1)  # expert states, uniform actions
    first = train_discriminator(disc, optimizer, cfg, sample_expert, random, gen)
    for _ in range(15):
        info = train_discriminator(disc, optimizer, cfg, sample_expert, random, gen)
    assert info["disc/loss"] < first["disc/loss"] - 0.2
    assert info["disc/accuracy"] > 0.8 and info["disc/expert_D"] > info["disc/policy_D"] + 0.3


def test_replayed_generator_transitions_fill_half_of_each_generator_minibatch():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(())), []

        def logits(self, obs, act, next_obs, terminated, log_pi):
            self.seen.append(obs[:, 0].detach().clone())
            return self.w * obs[:, 0]

    def rows(value, n):
        return {"obs": torch.full((n, 3), value), "act": torch.zeros(n, 1), "next_obs": torch.zeros(n, 3),
                "terminated": torch.zeros(n), "log_pi": torch.zeros(n)}

    disc, gen = Recorder(), torch.Generator().manual_seed(0)
    cfg = AdversarialConfig(disc_batch=8, disc_epochs=1)
    train_discriminator(disc, torch.optim.SGD(disc.parameters(), lr=0.1), cfg, lambda n: rows(1.0, n), rows(-1.0, 16),
                        gen, sample_replay=lambda n: rows(-2.0, n))
    generator_sides = disc.seen[1::2]  # expert minibatch first, then the generator's
    assert len(generator_sides) == 2
    for seen in generator_sides:
        assert seen.tolist() == [-1.0] * 4 + [-2.0] * 4


def test_airl_with_replay_runs_and_rejects_a_negative_size(demos, tmp_path):
    final = train_airl(tiny(demos / "pendulum.hdf5", tmp_path / "run", disc_replay=200), TINY_PPO, TINY_HEADS["gaussian"],
                       progress=False)
    assert final["env_steps"] == 256 and math.isfinite(final["eval_return"])
    with pytest.raises(ConfigError, match="disc-replay"):  # before anything is written
        train_airl(tiny(demos / "pendulum.hdf5", tmp_path / "bad", disc_replay=-1), TINY_PPO, TINY_HEADS["gaussian"],
                   progress=False)
    assert not (tmp_path / "bad").exists()


def test_action_features_one_hot_for_discrete_and_clipped_for_continuous():
    u = torch.tensor([[[1.0]], [[0.0]]])
    assert torch.equal(action_features(u, (2,)), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(action_features(torch.tensor([[[3.0]], [[-0.5]]]), ()), torch.tensor([[1.0], [-0.5]]))


def test_the_reward_artifact_round_trips(tmp_path):
    from imitate.data.normalizer import Normalizer

    torch.manual_seed(0)
    disc = AIRLDiscriminator(3, (8, 8), gamma=0.9)
    norm = Normalizer({"obs/state": ((3,), "meanstd"), "action": ((1,), "minmax")})
    norm.fit("obs/state", [np.random.default_rng(0).normal(2.0, 3.0, (100, 3))])
    seen = torch.randn(50, 3)
    reward = state_reward(disc, norm, seen)
    save_reward(tmp_path, reward, {"env_id": "Pendulum-v1", "expert_return": -140.0})
    loaded, meta = load_reward(tmp_path)
    assert meta["env_id"] == "Pendulum-v1" and meta["obs_dim"] == 3 and meta["hidden"] == [8, 8]
    raw = torch.randn(20, 3) * 3 + 2
    torch.testing.assert_close(loaded(raw), reward(raw), rtol=0, atol=0)
    # g with the normalization baked in and the shift that makes every seen state's reward >= 0
    expected = disc.g(norm.normalize("obs/state", raw)).squeeze(-1) - disc.g(seen).min()
    torch.testing.assert_close(loaded(raw), expected.detach())
    with torch.no_grad():
        smallest = float(loaded(norm.unnormalize("obs/state", seen)).min())
    assert smallest == pytest.approx(0.0, abs=1e-5)


def test_load_reward_names_what_is_missing(tmp_path):
    with pytest.raises(ImitateError, match="reward.json"):
        load_reward(tmp_path)
    (tmp_path / "reward.json").write_text('{"format": "something else"}')
    (tmp_path / "reward.safetensors").write_bytes(b"")
    with pytest.raises(ImitateError, match="not an imitate reward"):
        load_reward(tmp_path)


def test_airl_reward_is_reoptimized_by_imitate_rl(demos, tmp_path, capsys):
    from imitate.cli import main

    train_airl(tiny(demos / "pendulum.hdf5", tmp_path / "airl", eval_episodes=0), TINY_PPO, TINY_HEADS["gaussian"],
               progress=False)
    assert json.loads((tmp_path / "airl" / "config.json").read_text())["adversarial"]["grad_penalty"] == 0.0
    assert main(["rl", "--env", "Pendulum-v1", "--reward", str(tmp_path / "airl"), "--out", str(tmp_path / "rl"),
                 "--steps", "256", "--quiet", "--set", "ppo.n_envs=1", "--set", "ppo.n_steps=256",
                 "--set", "ppo.epochs=1", "--set", "hidden_dims=16"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["final"]["env_steps"] == 256 and math.isfinite(lines[-1]["final"]["return"])
    assert lines[-1]["final"]["normalized_return"] is not None  # the expert's return came with the reward
    assert load_policy(tmp_path / "rl").head.name == "gaussian"


def test_rl_on_a_recovered_reward_adds_the_entropy_term(demos, tmp_path, monkeypatch):
    from imitate.algos.ppo import PPO
    from imitate.algos.rl_loop import train_rl

    train_airl(tiny(demos / "pendulum.hdf5", tmp_path / "airl", eval_episodes=0), TINY_PPO, TINY_HEADS["gaussian"],
               progress=False)
    reward, _ = load_reward(tmp_path / "airl")
    seen, update = [], PPO.update

    def spy(self, buf, rewards=None):
        seen.append((buf, rewards))
        return update(self, buf, rewards)

    monkeypatch.setattr(PPO, "update", spy)
    for alpha in (0.0, 0.5):
        seen.clear()
        train_rl("Pendulum-v1", tmp_path / f"rl{alpha}", "gaussian", 128, str(tmp_path / "airl"), progress=False,
                 ppo_overrides={"n_envs": 1, "n_steps": 128, "epochs": 1}, eval_episodes=0, reward_entropy=alpha)
        buf, rewards = seen[0]
        with torch.no_grad():
            g = reward(buf["obs"].flatten(0, 1)).view(buf["obs"].shape[:2])
        torch.testing.assert_close(rewards, g - alpha * buf["log_prob"])
        assert json.loads((tmp_path / f"rl{alpha}" / "config.json").read_text())["reward_entropy"] == alpha
    with pytest.raises(ConfigError, match="reward-entropy"):
        train_rl("Pendulum-v1", tmp_path / "bad", reward=str(tmp_path / "airl"), reward_entropy=-1.0)


def test_bc_warm_start_starts_from_the_bc_weights(demos, tmp_path):
    from imitate.train import TrainConfig, train

    train(TrainConfig(data=str(demos / "pendulum.hdf5"), out=str(tmp_path / "bc"), head="gaussian", steps=4,
                      batch_size=16, obs_horizon=1, action_horizon=1, n_act=1, warmup_steps=1, eval_episodes=0,
                      val_every=0), {"hidden_dims": "16"}, {"hidden_dims": "16", "feature_dim": "16"}, progress=False)
    ppo = {**TINY_PPO, "lr": 0.0}  # no generator updates: the saved generator must be the BC policy
    train_gail(tiny(demos / "pendulum.hdf5", tmp_path / "gail", steps=128, init=str(tmp_path / "bc"), eval_episodes=0),
               ppo, progress=False)
    bc, gail = load_file(str(tmp_path / "bc" / "model.safetensors")), load_file(str(tmp_path / "gail" / "model.safetensors"))
    assert set(bc) == set(gail) and all(torch.equal(bc[k], gail[k]) for k in bc)
    with pytest.raises(ConfigError, match="--head"):
        train_gail(tiny(demos / "pendulum.hdf5", tmp_path / "gmm", head="gmm", init=str(tmp_path / "bc")), ppo,
                   progress=False)


def test_cli_gail_prints_json_lines(demos, tmp_path, capsys):
    from imitate.cli import main

    assert main(["gail", "--data", str(demos / "cartpole.hdf5"), "--env", "CartPole-v1", "--head", "autoregressive",
                 "--out", str(tmp_path / "run"), "--steps", "128", "--seed", "3", "--log-every", "128",
                 "--eval-episodes", "0", "--quiet", "--disc-hidden", "16", "--set", "ppo.n_envs=2",
                 "--set", "ppo.n_steps=64", "--set", "ppo.epochs=1", "--set", "head.d_model=16"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"env_steps", "return", "normalized_return"} <= set(lines[0]) and lines[0]["env_steps"] == 128
    settings = json.loads((tmp_path / "run" / "config.json").read_text())["adversarial"]
    assert settings["grad_penalty"] == 10.0  # GAIL's default, recorded as used
    assert main(["gail", "--data", str(demos / "cartpole.hdf5"), "--head", "gaussian", "--out", str(tmp_path / "bad"),
                 "--quiet"]) == 1
    assert "autoregressive" in capsys.readouterr().err


def test_expert_transitions_from_a_file_without_next_obs_leave_out_each_last_step(tmp_path):
    import h5py

    from imitate.data import Episode, make_env_args, write_demo_file

    rng = np.random.default_rng(0)
    episodes = []
    for i, n in enumerate((5, 7)):
        obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
        episodes.append(Episode(obs={"state": obs[:-1]}, next_obs={"state": obs[1:]}, name=f"demo_{i}",
                                actions=rng.normal(size=(n, 1)).astype(np.float32), rewards=np.zeros(n, np.float32),
                                dones=np.zeros(n, np.uint8)))
    path = write_demo_file(tmp_path / "p.hdf5", episodes, make_env_args("Pendulum-v1"))
    with h5py.File(path, "a") as f:
        for i in range(2):
            del f[f"data/demo_{i}/next_obs"]
    data, store = load_expert(str(path))
    assert store.next_obs_derived and len(data["obs"]) == 4 + 6
    np.testing.assert_array_equal(data["next_obs"][:4].numpy(), episodes[0].next_obs["state"][:4])
