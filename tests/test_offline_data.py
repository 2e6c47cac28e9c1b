"""The data side of offline RL: the StitchMaze task and its pieces, mixed-quality collection (--mix),
and the d3rlpy adapter's conversion."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from imitate.cli import main
from imitate.collect import MIX_SOURCES, collect, mix_plan, parse_mix
from imitate.envs import STITCH_MAZE_ID, StitchMazeExpert, make_env
from imitate.errors import ImitateError

ROOT = Path(__file__).resolve().parent.parent


def _demos(path):
    with h5py.File(path, "r") as f:
        out = []
        for name in sorted(f["data"], key=lambda n: int(n.split("_")[1])):
            g = f["data"][name]
            out.append({"name": name, "attrs": dict(g.attrs), "obs": np.asarray(g["obs/agent_pos"]) if "obs/agent_pos" in g else None,
                        "next_obs": np.asarray(g["next_obs/agent_pos"]) if "next_obs/agent_pos" in g else None,
                        "actions": np.asarray(g["actions"]), "rewards": np.asarray(g["rewards"]),
                        "dones": np.asarray(g["dones"])})
        masks = {k: sorted(v.decode() if isinstance(v, bytes) else str(v) for v in f["mask"][k][()]) for k in f["mask"]}
    return out, masks


# -- the stitching task ---------------------------------------------------------------------------
def test_stitch_maze_moves_slides_along_the_wall_and_rewards_only_the_goal():
    env = make_env(STITCH_MAZE_ID)
    geo = env.unwrapped.geometry
    obs, info = env.reset(seed=3)
    obs2, _ = make_env(STITCH_MAZE_ID).reset(seed=3)
    np.testing.assert_array_equal(obs["agent_pos"], obs2["agent_pos"])  # seeded
    start = obs["agent_pos"].astype(np.float64)
    assert np.all(np.abs(start - np.asarray(geo.start_center)) <= geo.start_jitter + 1e-6)
    assert info == {"is_success": False, "region": "start"}
    obs, r, term, trunc, info = env.step(np.array([1.0, -0.5], np.float32))
    np.testing.assert_allclose(obs["agent_pos"], start + np.array([0.04, -0.02]), atol=1e-6)
    assert (r, term, trunc, info["is_success"]) == (0.0, False, False, False)

    # under the wall, pushing up and right: the y part stops at the wall, the x part goes on
    u = env.unwrapped
    u._agent = np.array([-0.5, geo.wall[1] - geo.agent_radius - 0.01])
    obs, r, term, _, _ = env.step(np.array([1.0, 1.0], np.float32))
    assert obs["agent_pos"][0] == pytest.approx(-0.46, abs=1e-6)
    assert obs["agent_pos"][1] == pytest.approx(geo.wall[1] - geo.agent_radius - 0.01, abs=1e-6)
    assert not geo.blocked(obs["agent_pos"].astype(np.float64))

    # one step from the goal: reward 1, terminated, success
    u._agent = np.asarray(geo.goal_center) + np.array([geo.goal_radius + 0.02, 0.0])
    obs, r, term, trunc, info = env.step(np.array([-1.0, 0.0], np.float32))
    assert (r, term, info["is_success"], info["region"]) == (1.0, True, True, "goal")

    # the middle start is used only when asked for
    obs, info = env.reset(seed=4, options={"start": "middle"})
    assert info["region"] == "middle"
    with pytest.raises(ValueError, match="start"):
        env.reset(seed=4, options={"start": "goal"})
    assert env.spec.max_episode_steps == 150


def test_stitch_maze_max_speed_scales_the_moves_and_the_expert_follows():
    env = make_env(STITCH_MAZE_ID, {"max_speed": 0.8})
    obs, _ = env.reset(seed=0)
    start = obs["agent_pos"].astype(np.float64)
    obs, *_ = env.step(np.array([1.0, 0.0], np.float32))
    assert obs["agent_pos"][0] == pytest.approx(start[0] + 0.08, abs=1e-6)
    assert StitchMazeExpert(env_kwargs={"max_speed": 0.8}).geometry.max_speed == 0.8
    with pytest.raises(ValueError, match="max_speed"):
        StitchMazeExpert(env_kwargs={"speed": 0.8})
    from imitate.errors import ConfigError

    with pytest.raises(ConfigError, match="max_speed"):
        make_env(STITCH_MAZE_ID, {"max_speed": -1})


def test_stitch_demos_never_go_from_start_to_goal_but_the_pieces_chain(tmp_path):
    path = tmp_path / "stitch.hdf5"
    res = collect(STITCH_MAZE_ID, 60, path, seed=0, progress=False)
    demos, _ = _demos(path)
    geo = StitchMazeExpert().geometry
    start_c, middle_c, goal_c = (np.asarray(c) for c in (geo.start_center, geo.middle_center, geo.goal_center))
    pieces = {d["attrs"]["piece"] for d in demos}
    assert pieces == {"start_to_middle", "middle_to_goal", "wander"}
    ends_of_set1, starts_of_set2 = [], []
    for d in demos:
        first, last = d["obs"][0], d["next_obs"][-1]
        began_at_start = np.linalg.norm(first - start_c) <= 0.15
        success = bool(d["attrs"]["is_success"])
        assert not (began_at_start and success), f"{d['name']} goes from the start to the goal"
        assert success == (d["attrs"]["piece"] == "middle_to_goal")
        # rewards and dones: 1 exactly at the goal
        assert d["rewards"].sum() == float(success) and d["dones"].sum() == int(success)
        if success:
            assert d["rewards"][-1] == 1.0 and d["dones"][-1] == 1
            assert np.linalg.norm(last - goal_c) <= geo.goal_radius + 1e-6
        if d["attrs"]["piece"] == "start_to_middle":
            ends_of_set1.append(last)
        if d["attrs"]["piece"] == "middle_to_goal":
            starts_of_set2.append(first)
    assert ends_of_set1 and starts_of_set2
    ends, starts = np.asarray(ends_of_set1), np.asarray(starts_of_set2)
    # set 1 ends in the middle region, set 2 starts there: every set-2 start lies within 0.15 of a set-1 end
    assert np.all(np.linalg.norm(ends - middle_c, axis=1) <= geo.middle_radius)
    gaps = np.linalg.norm(starts[:, None, :] - ends[None, :, :], axis=2).min(axis=1)
    assert np.all(gaps <= 0.15), gaps
    assert res.success_rate == pytest.approx(np.mean([d["attrs"]["is_success"] for d in demos]))

    # stitched through the data: on a 0.1 grid, the cells of the start reach a rewarded transition by
    # following transitions that the file holds (from any demo), though no single demo does
    def cell(p):
        return tuple(np.floor((np.asarray(p) + 1.0) / 0.1).astype(int))

    edges: dict[tuple, set] = {}
    rewarded = set()
    for d in demos:
        for o, n, r in zip(d["obs"], d["next_obs"], d["rewards"]):
            edges.setdefault(cell(o), set()).add(cell(n))
            if r > 0:
                rewarded.add(cell(o))
    frontier = {cell(d["obs"][0]) for d in demos if d["attrs"]["piece"] == "start_to_middle"}
    seen = set(frontier)
    while frontier:
        frontier = {n for c in frontier for n in edges.get(c, ())} - seen
        seen |= frontier
    assert seen & rewarded, "the goal cannot be reached by chaining the file's transitions"


# -- mixed-quality collection ---------------------------------------------------------------------
def test_mix_plan_respects_the_shares_and_the_seed():
    shares = parse_mix("expert:0.2,noisy:0.5,random:0.3")
    assert shares == {"expert": 0.2, "noisy": 0.5, "random": 0.3}
    plan = mix_plan(shares, 10, seed=0)
    assert {k: plan.count(k) for k in MIX_SOURCES} == {"expert": 2, "noisy": 5, "random": 3}
    assert plan == mix_plan(shares, 10, seed=0)
    assert plan != mix_plan(shares, 10, seed=1)  # the order is shuffled by the seed
    odd = mix_plan(parse_mix("expert:0.34,random:0.66"), 7, seed=0)
    assert (odd.count("expert"), odd.count("random"), len(odd)) == (2, 5, 7)


def test_collect_mix_records_quality_and_is_reproducible(tmp_path, capsys):
    args = ["collect", "Pendulum-v1", "--episodes", "10", "--seed", "3", "--mix", "expert:0.2,noisy:0.5,random:0.3",
            "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a.hdf5")]) == 0
    assert '"quality_counts": {"expert": 2, "noisy": 5, "random": 3}' in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b.hdf5")]) == 0
    a, masks = _demos(tmp_path / "a.hdf5")
    b, _ = _demos(tmp_path / "b.hdf5")
    assert [d["attrs"]["quality"] for d in a] == [d["attrs"]["quality"] for d in b]
    for da, db in zip(a, b):
        np.testing.assert_array_equal(da["actions"], db["actions"])
    qualities = [d["attrs"]["quality"] for d in a]
    assert {q: qualities.count(q) for q in MIX_SOURCES} == {"expert": 2, "noisy": 5, "random": 3}
    for q in MIX_SOURCES:
        assert masks[f"quality_{q}"] == sorted(d["name"] for d in a if d["attrs"]["quality"] == q)
    returns = {q: np.mean([d["attrs"]["return"] for d in a if d["attrs"]["quality"] == q]) for q in MIX_SOURCES}
    assert returns["expert"] > returns["random"] + 300  # the sources differ in quality
    for d in a:
        assert np.all(np.abs(d["actions"]) <= 2.0)
    # the expert episodes are the plain expert's: same seed without --mix gives the same actions
    assert main(["collect", "Pendulum-v1", "--episodes", "10", "--seed", "3", "--quiet",
                 "--out", str(tmp_path / "plain.hdf5")]) == 0
    plain, _ = _demos(tmp_path / "plain.hdf5")
    for da, dp in zip(a, plain):
        same = np.array_equal(da["actions"], dp["actions"])
        assert same == (da["attrs"]["quality"] == "expert")


@pytest.mark.parametrize("spec, words", [
    ("expert:0.2,bogus:0.8", ["unknown source", "'bogus'"]),
    ("expert:0.2,noisy:0.5", ["sum to 0.7"]),
    ("expert:-0.2,random:1.2", ["-0.2", "[0, 1]"]),
    ("expert=1", ["not SOURCE:SHARE"]),
    ("expert:0.5,expert:0.5", ["twice"]),
    ("expert:half,random:0.5", ["not a number"]),
])
def test_a_bad_mix_is_refused_naming_the_flag_and_value(tmp_path, capsys, spec, words):
    with pytest.raises(ImitateError) as err:
        parse_mix(spec)
    for w in ["--mix", repr(spec)] + words:
        assert w in str(err.value)
    out = tmp_path / "x.hdf5"
    assert main(["collect", "Pendulum-v1", "--episodes", "2", "--mix", spec, "--out", str(out), "--quiet"]) == 1
    message = capsys.readouterr().err
    assert "--mix" in message and spec in message and "Traceback" not in message
    assert not out.exists()


def test_noisy_std_must_be_non_negative(tmp_path):
    with pytest.raises(ImitateError, match="--noisy-std"):
        collect("Pendulum-v1", 2, tmp_path / "x.hdf5", mix="noisy:1", noisy_std=-1.0, progress=False)


# -- the d3rlpy adapter ---------------------------------------------------------------------------
def test_d3rlpy_adapter_keeps_every_transition(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import d3rlpy_adapter
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = tmp_path / "stitch.hdf5"
    collect(STITCH_MAZE_ID, 12, path, seed=1, progress=False)  # terminal and truncated episodes
    demos, _ = _demos(path)
    assert {bool(d["dones"][-1]) for d in demos} == {True, False}
    arrays = d3rlpy_adapter.file_arrays(str(path))
    total = sum(len(d["actions"]) for d in demos)
    assert arrays["transitions"] == total
    truncated = sum(1 for d in demos if not d["dones"][-1])
    assert len(arrays["observations"]) == total + truncated
    assert arrays["rewards"].sum() == pytest.approx(sum(d["rewards"].sum() for d in demos))
    # the rows of one truncated episode: its observations, then its final next_obs
    row = 0
    for d in demos:
        n = len(d["actions"])
        np.testing.assert_array_equal(arrays["observations"][row:row + n], d["obs"])
        np.testing.assert_array_equal(arrays["actions"][row:row + n], d["actions"])
        if not d["dones"][-1]:
            np.testing.assert_array_equal(arrays["observations"][row + n], d["next_obs"][-1])
            assert arrays["timeouts"][row + n] == 1 and arrays["terminals"][row + n - 1] == 0
            n += 1
        else:
            assert arrays["terminals"][row + n - 1] == 1
        row += n
    missing = d3rlpy_adapter.d3rlpy_missing()
    if missing:
        pytest.skip(f"the MDPDataset half needs d3rlpy: {missing}")
    dataset, _ = d3rlpy_adapter.to_mdp_dataset(str(path))
    assert dataset.transition_count == total
    assert len(dataset.episodes) == len(demos)
    assert sum(float(ep.rewards.sum()) for ep in dataset.episodes) == pytest.approx(float(arrays["rewards"].sum()))


def test_d3rlpy_is_named_when_missing(monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import d3rlpy_adapter
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setitem(sys.modules, "d3rlpy", None)  # import d3rlpy now raises ImportError
    message = d3rlpy_adapter.d3rlpy_missing()
    assert message is not None and "d3rlpy" in message and "pip install --no-deps d3rlpy" in message
    assert importlib.util.find_spec("imitate") is not None


# -- the shipped files ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["stitch_maze", "pendulum_mixed", "block_push_mixed", "forked_path_mixed"])
def test_the_card_command_remakes_the_shipped_file(tmp_path, capsys, name):
    import re
    import shlex

    from imitate.data.info import demo_file_info

    card = (ROOT / "datasets" / f"{name}.md").read_text()
    command = re.search(r"- command: `imitate (collect [^`]+)`", card).group(1)
    argv = shlex.split(command)
    argv[argv.index("--out") + 1] = str(tmp_path / "remade.hdf5")
    assert main(argv + ["--quiet"]) == 0
    shipped = demo_file_info(ROOT / "datasets" / f"{name}.hdf5")
    remade = tmp_path / "remade.hdf5"
    if demo_file_info(remade)["content_sha256"] != shipped["content_sha256"]:
        # gymnasium's Pendulum multiplies float32 torques by Python floats: numpy 1.x promotes the scalar
        # to float64 where numpy 2 (NEP 50, the card's) keeps float32, so 1.x remakes it up to rounding
        assert name == "pendulum_mixed" and np.lib.NumpyVersion(np.__version__) < "2.0.0", name
        _assert_same_demos(remade, ROOT / "datasets" / f"{name}.hdf5", atol=0.05)
    assert shipped["content_sha256"] in card and str(shipped["transitions"]) in card
    import hashlib

    data = ROOT / "datasets" / f"{name}.hdf5"
    assert f"size: {data.stat().st_size} bytes" in card and data.stat().st_size < 2.2e6
    assert f"sha256: {hashlib.sha256(data.read_bytes()).hexdigest()}" in card


def _assert_same_demos(path_a, path_b, atol: float) -> None:
    """The same demos, keys, lengths and attrs, and every array within ``atol``."""
    with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
        assert sorted(a["data"]) == sorted(b["data"])
        for demo in b["data"]:
            da, db = a["data"][demo], b["data"][demo]
            assert da.attrs["quality"] == db.attrs["quality"]
            names: list[str] = []
            db.visit(lambda n: names.append(n) if isinstance(db[n], h5py.Dataset) else None)
            for n in names:
                assert da[n].shape == db[n].shape, (demo, n)
                np.testing.assert_allclose(da[n][()], db[n][()], atol=atol, err_msg=f"{demo}/{n}")
