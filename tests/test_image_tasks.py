"""Image variants of the planar tasks (obs_mode), experts labelling from the state, and the commands
around them (collect, eval, DAgger, compare's helpers) with an ``image`` key.

Training from pixels end to end needs the data layer and the image encoders; these tests exercise
the task side directly (stand-in policies that read the image) and stop at the Episodes and stores.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from imitate.collect import rollout_expert
from imitate.envs import (
    BLOCK_PUSH_ID,
    FORKED_PATH3_ID,
    FORKED_PATH_ID,
    OBS_MODES,
    expert_view,
    make_env,
    make_expert,
    task_of,
)
from imitate.errors import ImitateError

STATE_KEYS = {FORKED_PATH_ID: ("agent_pos", "goal_pos"), FORKED_PATH3_ID: ("agent_pos", "goal_pos"),
              BLOCK_PUSH_ID: ("agent_pos", "block_pos", "target_pos")}
STATE_SHAPES = {"agent_pos": (2,), "goal_pos": (2,), "block_pos": (2, 2), "target_pos": (2, 2)}
TASKS = (FORKED_PATH_ID, BLOCK_PUSH_ID)


def drive(env, actions, seed):
    """Observations (reset first) under a fixed action sequence, stopping at the episode's end."""
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        out.append(obs)
        if terminated or truncated:
            break
    return out


def agent_pixel(env, xy):
    canvas = env.unwrapped._canvas
    col, row = canvas.to_pixel(xy)
    return int(row), int(col)


# -- observation spaces -----------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_state_mode_is_the_state_observation_unchanged(task):
    """Default and obs_mode=state give the same space and observations (keys, dtypes, shapes, values),
    and the state view of an image env follows the very same states for the same seed and actions."""
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (25, 2)).astype(np.float32)
    default, state, image = (make_env(task), make_env(task, {"obs_mode": "state"}),
                             make_env(task, {"obs_mode": "image"}))
    assert list(default.observation_space.spaces) == list(STATE_KEYS[task])
    for key, space in default.observation_space.spaces.items():
        assert space.dtype == np.float32 and space.shape == STATE_SHAPES[key]
    assert default.observation_space == state.observation_space
    a, b = drive(default, actions, 7), drive(state, actions, 7)
    image.reset(seed=7)
    views = [image.unwrapped.state_obs()]
    for act in actions[:len(a) - 1]:
        image.step(act)
        views.append(image.unwrapped.state_obs())
    assert len(a) == len(b) == len(views) > 5
    for oa, ob, ov in zip(a, b, views):
        assert list(oa) == list(STATE_KEYS[task])
        for k in oa:
            assert oa[k].dtype == np.float32
            np.testing.assert_array_equal(oa[k], ob[k])
            np.testing.assert_array_equal(oa[k], ov[k])


def test_forked_path_state_follows_its_documented_dynamics():
    """The state observation is what it always was: the reset draws start offsets from the seeded
    generator (start_center + U(-1, 1) * start_jitter) and an action moves by action * max_speed * dt."""
    env = make_env(FORKED_PATH_ID)
    geo = env.unwrapped.geometry
    for seed in (0, 11):
        obs, _ = env.reset(seed=seed)
        offsets = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(2, 2))
        start = np.asarray(geo.start_center) + offsets[0] * geo.start_jitter
        np.testing.assert_array_equal(obs["agent_pos"], start.astype(np.float32))
        np.testing.assert_array_equal(obs["goal_pos"], np.asarray(geo.goal_center, np.float32))
        obs, *_ = env.step(np.array([0.5, 1.0], np.float32))
        np.testing.assert_array_equal(obs["agent_pos"],
                                      (start + np.array([0.5, 1.0]) * geo.max_speed * geo.dt).astype(np.float32))


@pytest.mark.parametrize("task", (*TASKS, FORKED_PATH3_ID))
@pytest.mark.parametrize("mode", ("image", "state+image"))
def test_image_observation_in_space(task, mode):
    env = make_env(task, {"obs_mode": mode})
    space = env.observation_space.spaces["image"]
    assert space.shape == (84, 84, 3) and space.dtype == np.uint8 and space.low.min() == 0 and space.high.max() == 255
    want = {"image"} | (set(STATE_KEYS[task]) if mode == "state+image" else set())
    assert set(env.observation_space.spaces) == want
    obs, _ = env.reset(seed=0)
    assert set(obs) == want and obs["image"].dtype == np.uint8 and obs["image"].shape == (84, 84, 3)
    assert env.observation_space.contains(obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
    small = make_env(task, {"obs_mode": mode, "image_size": 48})
    assert small.reset(seed=0)[0]["image"].shape == (48, 48, 3)
    assert small.observation_space.spaces["image"].shape == (48, 48, 3)


@pytest.mark.parametrize("kwargs, words", [({"obs_mode": "pixels"}, ["'pixels'", "state+image", "image"]),
                                           ({"obs_mode": "image", "image_size": 8}, ["image_size=8", "16"]),
                                           ({"obs_mode": "image", "image_size": 84.5}, ["image_size=84.5"])])
@pytest.mark.parametrize("task", TASKS)
def test_bad_view_arguments_are_named(task, kwargs, words):
    with pytest.raises(ImitateError) as info:
        make_env(task, kwargs)
    for word in words:
        assert word in str(info.value)
    assert task in str(info.value)


# -- what the image shows ---------------------------------------------------------------------------
def test_forked_path_image_shows_agent_goal_and_barrier():
    env = make_env(FORKED_PATH_ID, {"obs_mode": "state+image"})
    colours = env.unwrapped.IMAGE_COLOURS
    obs, _ = env.reset(seed=1)
    img = obs["image"]
    assert tuple(img[agent_pixel(env, obs["agent_pos"])]) == colours["agent"]
    assert tuple(img[agent_pixel(env, obs["goal_pos"])]) == colours["goal"]
    for x0, y0, x1, y1 in env.unwrapped.geometry.blocks:               # every barrier piece, passages free
        assert tuple(img[agent_pixel(env, ((x0 + x1) / 2, 0.0))]) == colours["barrier"]
    for gx in env.unwrapped.geometry.gap_centers:
        assert tuple(img[agent_pixel(env, (gx, 0.0))]) == colours["background"]
    before = obs
    for _ in range(5):                                                  # 5 steps right: 0.2 units, 8 px
        obs, *_ = env.step(np.array([1.0, 0.0], np.float32))
    assert not np.array_equal(before["image"], obs["image"])
    assert tuple(obs["image"][agent_pixel(env, obs["agent_pos"])]) == colours["agent"]
    assert tuple(obs["image"][agent_pixel(env, before["agent_pos"])]) == colours["background"]
    moved = np.argwhere(np.any(obs["image"] != before["image"], axis=-1))
    _, col_before = agent_pixel(env, before["agent_pos"])
    _, col_after = agent_pixel(env, obs["agent_pos"])
    assert moved[:, 1].min() >= col_before - 3 and moved[:, 1].max() <= col_after + 3  # only the agent changed


def test_sub_pixel_moves_change_the_image():
    """Anti-aliased discs: a move of a quarter pixel changes the agent's edge pixels."""
    env = make_env(FORKED_PATH_ID, {"obs_mode": "image"})
    env.reset(seed=0)
    first = env.unwrapped.observation_image()
    scale = env.unwrapped._canvas.scale
    env.step(np.array([0.25 / (scale * 0.04), 0.0], np.float32))        # 0.25 px to the right
    assert not np.array_equal(first, env.unwrapped.observation_image())


def test_block_push_image_shows_agent_blocks_and_targets():
    env = make_env(BLOCK_PUSH_ID, {"obs_mode": "state+image"})
    colours = env.unwrapped.COLOURS
    obs, _ = env.reset(seed=2)
    img = obs["image"]
    assert tuple(img[agent_pixel(env, obs["agent_pos"])]) == colours["agent"]
    for k in range(2):
        assert tuple(img[agent_pixel(env, obs["block_pos"][k])]) == colours["blocks"][k]
        assert tuple(img[agent_pixel(env, obs["target_pos"][k])]) == colours["targets"][k]
    assert len({colours["agent"], *colours["blocks"], *colours["targets"]}) == 5   # all distinct


# -- experts label from the state -------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_expert_from_state_under_image_mode_repeats_the_state_mode_episode(task):
    kwargs = {"noise": 0.1}
    for seed in (0, 5):
        ref = rollout_expert(make_env(task), make_expert(task, **kwargs), seed)
        img_env = make_env(task, {"obs_mode": "image"})
        ep = rollout_expert(img_env, make_expert(task, env_kwargs={"obs_mode": "image"}, **kwargs), seed)
        np.testing.assert_array_equal(ep.actions, ref.actions)
        np.testing.assert_array_equal(ep.rewards, ref.rewards)
        assert set(ep.obs) == {"image"} and ep.obs["image"].dtype == np.uint8
        assert ep.obs["image"].shape == (len(ref), 84, 84, 3)
        assert ep.attrs.get("route") == ref.attrs.get("route") and ep.attrs["is_success"] == ref.attrs["is_success"]


def test_expert_view_is_the_state():
    env = make_env(FORKED_PATH_ID, {"obs_mode": "image"})
    obs, _ = env.reset(seed=0)
    view = expert_view(env, obs)
    assert set(view) == {"agent_pos", "goal_pos"}
    state = make_env(FORKED_PATH_ID)
    plain, _ = state.reset(seed=0)
    assert expert_view(state, plain).keys() == plain.keys()
    np.testing.assert_array_equal(view["agent_pos"], plain["agent_pos"])
    pendulum = make_env("Pendulum-v1")
    o, _ = pendulum.reset(seed=0)
    assert expert_view(pendulum, o) is o                  # tasks without a state view: the observation


def test_experts_accept_view_kwargs_and_still_refuse_others():
    for task in (FORKED_PATH_ID, FORKED_PATH3_ID, BLOCK_PUSH_ID):
        make_expert(task, env_kwargs={"obs_mode": "state+image", "image_size": 64})
    with pytest.raises(ImitateError, match="bogus"):
        make_expert(BLOCK_PUSH_ID, env_kwargs={"obs_mode": "image", "bogus": 1})
    with pytest.raises(ImitateError, match="bogus"):
        make_expert(FORKED_PATH_ID, env_kwargs={"obs_mode": "image", "bogus": 1})


# -- collect ----------------------------------------------------------------------------------------
def test_collect_state_plus_image_builds_episodes_with_both_keys():
    from imitate.data import make_env_args

    env_kwargs = {"obs_mode": "state+image"}
    env = make_env(FORKED_PATH_ID, env_kwargs)
    ep = rollout_expert(env, make_expert(FORKED_PATH_ID, env_kwargs=env_kwargs), 3)
    assert set(ep.obs) == set(ep.next_obs) == {"agent_pos", "goal_pos", "image"}
    assert ep.obs["image"].dtype == np.uint8 and ep.obs["image"].shape == (len(ep), 84, 84, 3)
    np.testing.assert_array_equal(ep.next_obs["image"][:-1], ep.obs["image"][1:])
    assert not np.array_equal(ep.obs["image"][0], ep.obs["image"][-1])
    ref = rollout_expert(make_env(FORKED_PATH_ID), make_expert(FORKED_PATH_ID), 3)
    np.testing.assert_array_equal(ep.obs["agent_pos"], ref.obs["agent_pos"])
    for t in (0, len(ep) // 2, len(ep) - 1):                            # each frame shows that step's agent
        assert tuple(ep.obs["image"][t][agent_pixel(env, ep.obs["agent_pos"][t])]) == \
            env.unwrapped.IMAGE_COLOURS["agent"]
    # the file's env_args carry obs_mode, so eval rebuilds the same observations
    env_id, kwargs = task_of(make_env_args(FORKED_PATH_ID, env_kwargs))
    assert env_id == FORKED_PATH_ID and kwargs == env_kwargs
    assert make_env(env_id, kwargs).observation_space == env.observation_space


def test_collect_refuses_nothing_of_its_own_for_images(tmp_path):
    """collect() builds and hands image episodes to the writer; whether the file can be read back is
    the data layer's (this checks the write and the episode count, not the read)."""
    import h5py

    from imitate.collect import collect

    out = tmp_path / "img.hdf5"
    res = collect(BLOCK_PUSH_ID, 2, out, env_kwargs={"obs_mode": "image", "image_size": 32}, progress=False)
    assert res.episodes == 2 and res.transitions > 0
    with h5py.File(out, "r") as f:
        obs = f["data/demo_0/obs"]
        assert list(obs) == ["image"] and obs["image"].dtype == np.uint8 and obs["image"].shape[1:] == (32, 32, 3)
        assert '"obs_mode": "image"' in f["data"].attrs["env_args"]


# -- eval and DAgger from pixels --------------------------------------------------------------------
class PixelPolicy:
    """A stand-in policy that acts from the image alone: it finds the agent's blue pixels and heads
    up (ForkedPath's right passage is reached by steering right first). Records what it was given."""

    device = "cpu"
    obs_keys = ["image"]

    def __init__(self):
        self.seen = []

    def eval(self):
        return self

    def reset(self):
        pass

    def act(self, obs, generator=None, deterministic=False):
        img = np.asarray(obs["image"])
        self.seen.append((sorted(obs), img.dtype, img.shape))
        single = img.ndim == 3
        img = img[None] if single else img
        blue = (img[..., 2] > 180) & (img[..., 0] < 80)
        rows = np.array([np.argwhere(b)[:, 0].mean() for b in blue])
        cols = np.array([np.argwhere(b)[:, 1].mean() for b in blue])
        size = img.shape[1]
        # below the barrier: steer to x = +0.5 (column 0.75 * size); then straight up
        dx = np.where(rows > size / 2 + 4, np.clip((0.75 * size - cols) / 4, -1, 1), -np.clip((cols - size / 2) / 8, -1, 1))
        act = np.stack([dx, np.ones_like(dx)], 1).astype(np.float32)
        return act[0] if single else act


def test_eval_from_pixels_with_video(tmp_path):
    torch = pytest.importorskip("torch", reason="imitate.evaluate needs torch")
    from imitate.compare_runs import _rollouts
    from imitate.evaluate import evaluate

    policy = PixelPolicy()
    policy.device = torch.device("cpu")
    res = evaluate(policy, FORKED_PATH_ID, {"obs_mode": "image"}, episodes=4, seed=0, n_envs=2,
                   video=str(tmp_path / "v.gif"), progress=False, return_observations=True)
    assert {tuple(keys) for keys, _, _ in policy.seen} == {("image",)}
    assert {(dt, shape) for _, dt, shape in policy.seen} == {(np.dtype(np.uint8), (2, 84, 84, 3))}
    assert (tmp_path / "v.gif").stat().st_size > 0
    assert res["success_rate"] > 0.5                                 # the pixels carried the position
    obs = res["observations"][0]
    assert set(obs) == {"agent_pos", "goal_pos"} and obs["agent_pos"].shape[1] == 2   # state views, no images
    out = _rollouts(policy, FORKED_PATH_ID, {"obs_mode": "image"}, 2, 0)
    assert len(out["trajectories"]) == 2 and len(out["trajectories"][0]["xy"]) > 10


def test_dagger_labels_from_state_while_the_policy_sees_pixels():
    from imitate.algos.dagger import ScriptedGate, _episode, rollout
    from imitate.envs.experts import LABEL_SETTINGS

    env_kwargs = {"obs_mode": "image"}
    env = make_env(FORKED_PATH_ID, env_kwargs)
    labeler = make_expert(FORKED_PATH_ID, env_kwargs=env_kwargs, **LABEL_SETTINGS[FORKED_PATH_ID])
    policy = PixelPolicy()
    steps, summary = rollout(env, policy, labeler, seed=4, beta=1.0)     # the expert drives: its own episode
    assert {tuple(keys) for keys, _, _ in policy.seen} == {("image",)}
    assert {shape for _, _, shape in policy.seen} == {(84, 84, 3)}
    ref = rollout_expert(make_env(FORKED_PATH_ID),
                         make_expert(FORKED_PATH_ID, **LABEL_SETTINGS[FORKED_PATH_ID]), 4)
    np.testing.assert_array_equal(np.stack([s["label"] for s in steps]), ref.actions)
    assert summary["is_success"]
    ep = _episode(steps, {"round": 1, "kind": "dagger"})
    assert set(ep.obs) == {"image"} and ep.obs["image"].dtype == np.uint8

    # beta 0: the pixel policy drives, every visited state is labelled by the expert from its state
    labeler = make_expert(FORKED_PATH_ID, env_kwargs=env_kwargs, **LABEL_SETTINGS[FORKED_PATH_ID])
    steps, _ = rollout(env, policy, labeler, seed=5, beta=0.0)
    check = make_expert(FORKED_PATH_ID, **LABEL_SETTINGS[FORKED_PATH_ID])
    check.reset(seed=int(np.random.SeedSequence([5, 1]).generate_state(1)[0]))
    state_env = make_env(FORKED_PATH_ID)
    obs, _ = state_env.reset(seed=5)
    for s in steps:                                                      # replay the executed actions
        np.testing.assert_array_equal(s["label"], check.act(obs))
        obs, *_ = state_env.step(s["executed"])

    # HG-DAgger's scripted gate reads the state too
    labeler = make_expert(FORKED_PATH_ID, env_kwargs=env_kwargs, **LABEL_SETTINGS[FORKED_PATH_ID])
    gate = ScriptedGate(labeler, threshold=0.05, patience=3)
    steps, _ = rollout(env, policy, labeler, seed=6, gate=gate)
    assert any(s["expert"] for s in steps) and all((s["label"] is None) != s["expert"] for s in steps)


# -- compare and report with an image key -----------------------------------------------------------
def image_store(with_state: bool, n_eps: int = 6, size: int = 24):
    """An in-memory store of ForkedPath expert episodes with the image key (and the state keys)."""
    from imitate.data.store import EpisodeStore

    mode = "state+image" if with_state else "image"
    env = make_env(FORKED_PATH_ID, {"obs_mode": mode, "image_size": size})
    eps = [rollout_expert(env, make_expert(FORKED_PATH_ID, env_kwargs={"obs_mode": mode}), s) for s in range(n_eps)]
    keys = list(eps[0].obs)
    arrays = {f"obs/{k}": np.concatenate([e.obs[k] for e in eps]) for k in keys}
    arrays.update({f"next_obs/{k}": np.concatenate([e.next_obs[k] for e in eps]) for k in keys})
    for field in ("actions", "rewards", "dones"):
        arrays[field] = np.concatenate([getattr(e, field) for e in eps])
    ends = np.cumsum([len(e) for e in eps])
    return EpisodeStore(arrays, ends, [f"demo_{i}" for i in range(n_eps)], demo_attrs=[e.attrs for e in eps],
                        filter_keys={"valid": ["demo_4", "demo_5"]})


def test_state_features_never_flatten_images():
    from imitate.sample_metrics import POOL_GRID, state_features

    both = image_store(with_state=True)
    assert state_features(both).shape == (len(both), 4)                 # the low-dim keys only
    only = image_store(with_state=False)
    feats = state_features(only)
    assert feats.shape == (len(only), POOL_GRID * POOL_GRID * 3) and np.isfinite(feats).all()
    # pooled pixels still place the agent: a row's nearest other row (in pooled pixels) has the agent nearby
    pos = both.get("obs/agent_pos", np.arange(len(both)))             # same seeds: the same trajectories
    gaps = []
    for q in range(0, len(only), 7):
        d = np.linalg.norm(feats - feats[q], axis=1)
        d[q] = np.inf
        gaps.append(np.linalg.norm(pos[np.argmin(d)] - pos[q]))
    assert np.median(gaps) < 0.1, gaps          # 0.1 arena units = 1 pooled cell of a 24-pixel image
    from imitate.sample_metrics import query_set

    qs = query_set(only, 2, 8, 4, queries=6, neighbours=3)
    assert qs.obs["image"].dtype == np.uint8 and qs.obs["image"].shape == (6, 2, 24, 24, 3)
    assert qs.reference.shape == (6, 3, 4, 2) and set(qs.episodes) <= {4, 5}      # held-out demos only


def test_sample_policy_batches_image_windows_by_bytes():
    from imitate import sample_metrics
    from imitate.sample_metrics import QuerySet, sample_policy

    torch = pytest.importorskip("torch", reason="sample_policy seeds a torch generator")
    rng = np.random.default_rng(0)
    q, to, size = 5, 2, 84
    images = rng.integers(0, 256, (q, to, size, size, 3), dtype=np.uint8)
    qs = QuerySet(obs={"image": images}, reference=np.zeros((q, 3, 1, 2)), rows=np.arange(q),
                  episodes=np.arange(q), action_low=-np.ones(2), action_high=np.ones(2), n_act=1)

    class Mean:
        device = torch.device("cpu")
        calls = []

        def predict_chunk(self, obs, generator=None):
            img = obs["image"]
            self.calls.append((img.dtype, len(img)))
            m = img.reshape(len(img), -1).mean(1)
            return np.stack([m, -m], 1)[:, None, :].repeat(2, 1)

    samples = 300
    out = sample_policy(Mean(), qs, samples)
    assert out.shape == (q, samples, 1, 2)
    want = images.reshape(q, -1).mean(1)
    np.testing.assert_allclose(out[:, :, 0, 0], np.repeat(want[:, None], samples, 1))
    limit = sample_metrics.SAMPLE_BATCH_BYTES // images[0].nbytes
    assert all(dt == np.uint8 and n <= limit for dt, n in Mean.calls) and sum(n for _, n in Mean.calls) == q * samples

    # a policy that names its keys gets only those (a state policy is not handed a file's images)
    qs.obs["agent_pos"] = rng.normal(size=(q, to, 2)).astype(np.float32)

    class State(Mean):
        obs_keys = ["agent_pos"]
        calls = []

        def predict_chunk(self, obs, generator=None):
            self.calls.append(sorted(obs))
            return np.repeat(obs["agent_pos"][:, -1:, :], 2, 1)

    out = sample_policy(State(), qs, 7)
    assert {tuple(c) for c in State.calls} == {("agent_pos",)} and len(State.calls) == 1   # one batch: 35 small rows
    np.testing.assert_allclose(out[:, 3, 0], qs.obs["agent_pos"][:, -1])


def test_report_strip_and_compare_helpers_take_an_image_key(tmp_path):
    pytest.importorskip("matplotlib", reason="the report draws with matplotlib")
    from imitate.compare import _demo_trajectories
    from imitate.report import input_frames

    only = image_store(with_state=False)
    env = make_env(FORKED_PATH_ID).unwrapped
    assert _demo_trajectories(env, only) == []                           # no state keys: no demo paths
    both = image_store(with_state=True)
    paths = _demo_trajectories(env, both)
    assert len(paths) == both.n_episodes and len(paths[0]["xy"]) == both.episode_lengths[0]
    from imitate.compare import _reference
    from imitate.sample_metrics import query_set

    ref = _reference(query_set(both, 2, 8, 4, queries=6, neighbours=3), [0, 2])
    assert set(ref["obs"]) == {"agent_pos", "goal_pos"} and np.shape(ref["obs"]["agent_pos"]) == (2, 2)
    assert ref["frames"]["image"].dtype == np.uint8 and ref["frames"]["image"].shape == (2, 2, 24, 24, 3)
    assert np.shape(ref["actions"]) == (2, 3, 2)
    frames = np.stack([only.get("obs/image", np.array([r, r + 1])) for r in (0, 10, 20)])   # (S, To, H, W, C)
    assert input_frames({"image": frames}, tmp_path / "strip.png")
    assert (tmp_path / "strip.png").read_bytes()[:4] == b"\x89PNG"
    assert not input_frames({}, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_obs_modes_listed():
    assert OBS_MODES == ("state", "image", "state+image")


# -- ReacherModes: the arm drawn from MuJoCo's body positions --------------------------------------
def test_reacher_modes_image_and_expert_from_state():
    pytest.importorskip("mujoco", reason="ReacherModes needs MuJoCo (pip install -e '.[mujoco]')")
    from imitate.envs import REACHER_MODES_ID

    plain = make_env(REACHER_MODES_ID)
    assert plain.observation_space.shape == (10,) and plain.observation_space.dtype == np.float32
    env = make_env(REACHER_MODES_ID, {"obs_mode": "state+image"})
    assert set(env.observation_space.spaces) == {"state", "image"}
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["state"], plain.reset(seed=1)[0])
    data = env.unwrapped._reacher.data
    colours = env.unwrapped.IMAGE_COLOURS
    img = obs["image"]
    assert tuple(img[agent_pixel(env, data.body("target").xpos[:2])]) == colours["target"]
    assert tuple(img[agent_pixel(env, data.body("fingertip").xpos[:2])]) == colours["fingertip"]
    mid = (data.body("body0").xpos[:2] + data.body("body1").xpos[:2]) / 2
    assert tuple(img[agent_pixel(env, mid)]) == colours["arm"]
    for seed in (0, 3):   # same episode from pixels-only and state-only environments: labels from the state
        ref = rollout_expert(make_env(REACHER_MODES_ID), make_expert(REACHER_MODES_ID), seed)
        ep = rollout_expert(make_env(REACHER_MODES_ID, {"obs_mode": "image"}),
                            make_expert(REACHER_MODES_ID, env_kwargs={"obs_mode": "image"}), seed)
        np.testing.assert_array_equal(ep.actions, ref.actions)
        assert set(ep.obs) == {"image"} and ep.attrs.get("route") == ref.attrs.get("route")
        assert not np.array_equal(ep.obs["image"][0], ep.obs["image"][-1])
    with pytest.raises(ImitateError, match="'rgb'"):
        make_env(REACHER_MODES_ID, {"obs_mode": "rgb"})
