"""imitate compare: the metrics on known distributions, the held-out query set, rollouts with episode
metrics and observations, and a tiny comparison end to end (report files, resume, errors)."""
from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from imitate.compare import compare
from imitate.errors import ConfigError, ImitateError
from imitate.sample_metrics import coverage, energy_distance, mmd_rbf, query_set

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "datasets" / "forked_path.hdf5"
# Tiny heads and budget: the pipeline is under test, not the policies' quality.
TINY_SETTINGS = {"deterministic.hidden_dims": "32", "gmm.hidden_dims": "32", "gmm.num_modes": "2",
                 "diffusion.mlp_hidden_dims": "32", "diffusion.time_embed_dim": "16", "diffusion.num_train_timesteps": "20",
                 "diffusion.num_inference_steps": "3", "encoder.hidden_dims": "32", "encoder.feature_dim": "16"}


def tiny_settings(*heads: str) -> dict:
    """TINY_SETTINGS for the compared heads only (a setting for a head not compared is an error)."""
    return {k: v for k, v in TINY_SETTINGS.items() if k.split(".")[0] in (*heads, "encoder")}


TINY = dict(steps=6, seeds=2, episodes=3, batch_size=16, action_horizon=4, n_act=2, queries=6, samples=12,
            neighbours=4, latency_calls=3)


# -- metrics on known distributions ----------------------------------------------------------------
def _bimodal(rng, n):
    centers = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return np.stack([centers, np.zeros(n)], 1) + 0.1 * rng.normal(size=(n, 2))


@pytest.mark.parametrize("metric", [energy_distance, mmd_rbf])
def test_a_bimodal_sample_beats_its_mean_and_one_of_its_modes(metric):
    rng = np.random.default_rng(0)
    demos, same = _bimodal(rng, 200), _bimodal(rng, 300)
    mean = np.repeat(demos.mean(0, keepdims=True), 300, 0)          # what an averaging policy outputs
    one_mode = same[same[:, 0] > 0]
    itself, averaged, collapsed = metric(same, demos), metric(mean, demos), metric(one_mode, demos)
    assert abs(itself) < 0.05
    assert averaged > 10 * max(abs(itself), 0.01) and collapsed > 10 * max(abs(itself), 0.01)
    assert metric(demos, same) == pytest.approx(itself)                 # symmetric


def test_coverage_counts_the_modes_reached():
    rng = np.random.default_rng(1)
    demos, same = _bimodal(rng, 100), _bimodal(rng, 300)
    assert coverage(same, demos) > 0.9
    assert 0.3 < coverage(same[same[:, 0] > 0], demos) < 0.7
    assert coverage(np.zeros((50, 2)), demos) == 0.0


def test_energy_distance_matches_the_closed_form_for_two_points():
    # X = {0}, Y = {1}: 2|0-1| - 0 - 0 = 2 (U-statistics of single points are 0)
    assert energy_distance(np.zeros((1, 1)), np.ones((1, 1))) == pytest.approx(2.0)


def test_query_set_uses_held_out_states_and_one_neighbour_per_demo():
    from imitate.data import load_demo_file

    store = load_demo_file(SHIPPED)
    qs = query_set(store, obs_horizon=2, action_horizon=8, n_act=4, queries=10, neighbours=6)
    valid = set(store.episodes_in("valid").tolist())
    assert set(qs.episodes.tolist()) <= valid
    assert qs.obs["agent_pos"].shape == (10, 2, 2) and qs.reference.shape == (10, 6, 4, 2)
    # the query's own executed actions are its nearest neighbour's
    own = store.get("actions", qs.rows[:, None] + np.arange(4))
    np.testing.assert_array_equal(qs.reference[:, 0], own)
    # the same query set every time
    again = query_set(store, obs_horizon=2, action_horizon=8, n_act=4, queries=10, neighbours=6)
    np.testing.assert_array_equal(again.reference, qs.reference)
    assert qs.scale(qs.reference).min() >= -1 - 1e-9 and qs.scale(qs.reference).max() <= 1 + 1e-9


# -- rollouts: episode metrics and observations ------------------------------------------------------
class _Scored(gymnasium.Wrapper):
    metadata = {"render_modes": [], "episode_metrics": ["score"]}

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, term, trunc, {**info, "score": float(obs["agent_pos"][1])}


def test_evaluate_reports_episode_metrics_and_returns_observations():
    import torch

    from imitate.evaluate import evaluate

    gymnasium.register("imitate-test/Scored-v0", entry_point=lambda **kw: _Scored(
        __import__("imitate.envs.forked_path", fromlist=["x"]).ForkedPathEnv(**kw)), max_episode_steps=8)

    class Up(torch.nn.Module):                      # a stand-in policy: straight up, always
        device = torch.device("cpu")

        def eval(self):
            return self

        def reset(self):
            pass

        def act(self, obs, generator=None, deterministic=False):
            return np.tile([0.0, 1.0], (len(obs["agent_pos"]), 1))

    try:
        res = evaluate(Up(), "imitate-test/Scored-v0", None, episodes=3, seed=0, progress=False,
                       return_observations=True)
    finally:
        gymnasium.registry.pop("imitate-test/Scored-v0")
    finals = [o["agent_pos"][-1, 1] for o in res["observations"]]
    assert [len(o["agent_pos"]) for o in res["observations"]] == [9, 9, 9]        # reset + 8 steps
    assert res["episode_metrics"]["score"] == pytest.approx(float(np.mean(finals)), abs=1e-6)
    assert "observations" not in evaluate(Up(), "imitate/ForkedPath-v0", None, 1, progress=False)


# -- the comparison end to end ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_demos(tmp_path_factory):
    """30 ForkedPath demonstrations (24 train, 6 valid): fast to load."""
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("data") / "fp30.hdf5"
    res = collect("imitate/ForkedPath-v0", 30, path, seed=0, valid_fraction=0.2, progress=False)
    return path, res.mode_shares


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.external, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def _mtimes(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}


HEADS = ["deterministic", "gmm", "diffusion"]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, small_demos):
    """A tiny comparison of three heads over two seeds, two runs at a time (worker processes)."""
    data, shares = small_demos
    out = tmp_path_factory.mktemp("compare") / "cmp"
    res = compare(str(data), str(out), heads=",".join(HEADS), settings=TINY_SETTINGS, progress=False, jobs=2, **TINY)
    return data, shares, out, res


def test_tiny_compare_writes_the_report_and_does_not_retrain(tiny_report):
    data, shares, out, res = tiny_report
    heads = HEADS
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file()
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["heads"]) == heads and saved == json.loads(json.dumps(res))
    md = (out / "report.md").read_text()
    page = _Page()
    page.feed((out / "report.html").read_text())
    for head in heads:
        assert f"| {head} |" in md and head in "".join(page.text)
        s = saved["heads"][head]["summary"]
        assert len(s["energy_distance"]["values"]) == 2 and 0 <= s["coverage"]["mean"] <= 1
        assert s["params"]["mean"] > 0 and s["latency_ms"]["mean"] > 0 and s["success_rate"] is not None
        assert (out / "runs" / head / "seed1" / "model.safetensors").is_file()
    assert saved["data"]["mode_shares"] == shares and len(shares) == 2
    assert len(page.imgs) >= 4 and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert page.external == [] and "http" not in (out / "report.html").read_text()
    for name in ("metrics.png", "action_samples.png", "trajectories.png", "training_curves.png"):
        assert (out / "plots" / name).stat().st_size > 1000 and f"plots/{name}" in md

    before = {h: _mtimes(out / "runs" / h / "seed0") for h in heads}
    again = compare(str(data), str(out), heads=",".join(heads), settings=TINY_SETTINGS, progress=False, jobs=1,
                    **TINY)
    assert {h: _mtimes(out / "runs" / h / "seed0") for h in heads} == before
    assert again["heads"]["gmm"]["summary"]["energy_distance"] == res["heads"]["gmm"]["summary"]["energy_distance"]

    with pytest.raises(ImitateError, match="steps"):
        compare(str(data), str(out), heads="gmm", settings=tiny_settings("gmm"), progress=False, jobs=1,
                **{**TINY, "steps": 8})


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, small_demos):
    data = small_demos[0]
    import dataclasses

    from imitate.compare import make_config, split_settings
    from imitate.train import train

    out = tmp_path / "cmp"
    cfg = make_config(str(data), str(out), **{**TINY, "seeds": 1, "episodes": 0})
    run_dir = out / "runs" / "deterministic" / "seed0"
    head, encoder = split_settings(tiny_settings("deterministic"), ["deterministic"])
    tcfg = dataclasses.replace(cfg.train, data=str(Path(data).resolve()), out=str(run_dir), head="deterministic", seed=0)
    train(tcfg, head["deterministic"], encoder, progress=False, stop_at=3)
    res = compare(str(data), str(out), heads="deterministic", settings=tiny_settings("deterministic"), progress=False, jobs=1,
                  **{**TINY, "seeds": 1, "episodes": 0})
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == [1, 2, 3, 4, 5, 6]   # 1-3 before, 4-6 resumed
    assert lines[-1]["final"]["step"] == 6
    assert res["heads"]["deterministic"]["summary"]["success_rate"] is None     # no rollouts asked for


def test_bad_heads_and_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="transformer.*available heads"):
        compare(str(SHIPPED), str(tmp_path / "x"), heads="gmm,transformer", progress=False)
    with pytest.raises(ConfigError, match="num_modes"):
        compare(str(SHIPPED), str(tmp_path / "x"), heads="gmm", settings={"num_modes": "3"}, progress=False)
    with pytest.raises(ConfigError, match="no_such_field"):
        compare(str(SHIPPED), str(tmp_path / "x"), heads="gmm", settings={"gmm.no_such_field": "3"}, progress=False)
    res = subprocess.run([sys.executable, "-m", "imitate", "compare", "--data", str(SHIPPED), "--out",
                          str(tmp_path / "y"), "--heads", "gmm,transformer"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 1 and "transformer" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "imitate", "compare", "--data", str(tmp_path / "missing.hdf5"),
                          "--out", str(tmp_path / "z")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 1 and "missing.hdf5" in res.stderr and "Traceback" not in res.stderr


def test_demo_command_runs_compare_and_says_where_the_report_is(tmp_path, monkeypatch, capsys, small_demos):
    from imitate import cli

    monkeypatch.setattr(cli, "SHIPPED_DATASET", small_demos[0])
    monkeypatch.setattr(cli, "DEMO_COMPARE", {**TINY, "heads": "deterministic", "seeds": 1, "jobs": 1,
                                              "settings": tiny_settings("deterministic")})
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "demo" / "report.html") in printed and (tmp_path / "demo" / "report.html").is_file()


def test_the_report_renders_in_a_real_browser(tiny_report, tmp_path):
    """Headless Chromium draws report.html with its embedded images (skipped, with the reason
    printed, where no Chromium is installed: `apt-get install chromium`)."""
    import shutil

    from matplotlib.image import imread

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium on PATH: the browser check of report.html needs one")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,2400", (tiny_report[2] / "report.html").as_uri()],
                   capture_output=True, timeout=180, check=True)
    pixels = imread(shot)[..., :3]
    colourful = (pixels.max(-1) - pixels.min(-1)) > 0.2            # the plots' coloured points and bars
    assert pixels.shape[:2] == (2400, 1200) and colourful.mean() > 0.002
