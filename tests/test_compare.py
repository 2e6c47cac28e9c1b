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
    said = saved["verdict"]
    assert sorted(h for g in ("keeps", "partly", "collapses", "averages") for h in said[g]) == sorted(heads)
    assert "## Verdict" in md and said["text"][0] in md and "Verdict" in "".join(page.text)
    assert "2 seeds and 3 rollouts per run" in said["caveat"] and said["caveat"] in md

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
    with pytest.raises(ConfigError, match="denoiser.*'mpl'"):          # a misspelled value, before any training
        compare(str(SHIPPED), str(tmp_path / "x"), heads="diffusion", settings={"diffusion.denoiser": "mpl"},
                progress=False)
    with pytest.raises(ConfigError, match="gmm head is not among --heads"):
        compare(str(SHIPPED), str(tmp_path / "x"), heads="deterministic", settings={"gmm.num_modes": "3"},
                progress=False)
    assert not (tmp_path / "x").exists()
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


# -- the report's verdict, from numbers made by hand ----------------------------------------------------
def _stat(*values):
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def _results(seeds=3, episodes=50, env_id="imitate/ForkedPath-v0", curves=None, deterministic=None):
    """results.json of a comparison where the deterministic head takes one route and gmm keeps both
    (``deterministic``: other numbers for that head)."""
    from imitate.report import METRICS, overfitting, verdict

    numbers = {"deterministic": dict(success_rate=1.0, behaviour_entropy=0.0, mode_share_gap=50.0, energy_distance=0.28,
                                     mmd=0.2, coverage=0.45, mean_return=26.0, train_time_s=10.0, params=9e3,
                                     latency_ms=0.1),
               "gmm": dict(success_rate=0.96, behaviour_entropy=0.97, mode_share_gap=8.0, energy_distance=0.05,
                           mmd=0.02, coverage=0.9, mean_return=24.0, train_time_s=30.0, params=2e4, latency_ms=0.5)}
    numbers["deterministic"].update(deterministic or {})
    if not env_id:
        numbers = {h: {k: v for k, v in n.items() if k not in ("success_rate", "behaviour_entropy", "mode_share_gap",
                                                                "mean_return")} for h, n in numbers.items()}
    curves = curves or {}
    results = {"settings": {"seeds": seeds, "episodes": episodes, "steps": 2000},
               "data": {"env_id": env_id, "mode_shares": {"left": 0.5, "right": 0.5} if env_id else {},
                        "success_rate": 1.0, "behaviour_entropy": 1.0, "mean_return": 25.0},
               "baseline_demo_mean": {"energy_distance": 0.21, "mmd": 0.15, "coverage": 0.0},
               "metrics": {k: {"label": label, "better": b} for k, label, b in METRICS},
               "heads": {h: {"settings": {}, "summary": {k: _stat(*[v] * seeds) for k, v in n.items()},
                             "runs": [{"overfitting": overfitting(curves.get((h, s), []))} for s in range(seeds)]}
                         for h, n in numbers.items()}}
    results["verdict"] = verdict(results)
    return results


def test_the_verdict_names_the_collapsed_deterministic_head_with_its_numbers_and_thresholds():
    said = _results()["verdict"]
    assert said["collapses"] == ["deterministic"] and said["keeps"] == ["gmm"] and said["caveat"] is None
    text = " ".join(said["text"])
    assert said["text"][0] == "Verdict: gmm keeps the modes; deterministic collapses onto one mode."
    assert ("deterministic: behaviour entropy 0.00, mode share gap 50 points, coverage 0.45, "
            "energy distance 0.280, not below the mean of the demonstrations' 0.210; gmm:") in text
    assert "gmm: behaviour entropy 0.97, mode share gap 8 points, coverage 0.90, energy distance 0.050." in text
    assert "at least 0.50" in text and "within 25 points" in text and "below an entropy of 0.20" in text
    assert "Overfitting" not in text


def test_a_head_that_uses_both_modes_but_acts_no_closer_than_their_mean_averages_them():
    # ReacherModes' deterministic head (BENCHMARKS.md): both elbows in closed loop, actions no better than the mean
    said = _results(deterministic=dict(behaviour_entropy=0.67, mode_share_gap=24.0, energy_distance=0.438))["verdict"]
    assert said["averages"] == ["deterministic"] and said["keeps"] == ["gmm"]
    assert said["text"][0] == "Verdict: gmm keeps the modes; deterministic averages them."


def test_without_rollouts_the_verdict_uses_coverage_and_the_mean_of_the_demonstrations():
    said = _results(env_id=None)["verdict"]
    assert said["averages"] == ["deterministic"] and said["keeps"] == ["gmm"]
    assert "coverage is at least 0.70" in " ".join(said["text"])


def test_a_small_budget_gets_a_caution_and_a_rising_validation_loss_is_flagged():
    falling = [[s, 1.0 / (1 + s / 100)] for s in range(200, 2001, 200)]
    rising = [[s, 1.0] for s in range(200, 2001, 200)]
    for i, loss in enumerate([1.0, 0.6, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]):
        rising[i][1] = loss
    said = _results(seeds=1, episodes=10, curves={("gmm", 0): rising, ("deterministic", 0): falling})["verdict"]
    assert said["caveat"] and "1 seed and 10 rollouts per run" in said["caveat"] and "noise" in said["caveat"]
    assert [(o["head"], o["seed"], o["best_step"], o["last_step"]) for o in said["overfitting"]] == [("gmm", 0, 600, 2000)]
    assert "Overfitting: gmm seed 0: its validation loss rose from 0.400 at step 600 to 0.950 at step 2000" in \
        " ".join(said["text"])


def test_overfitting_needs_a_clear_and_lasting_rise():
    from imitate.report import overfitting

    noisy = [[s, 1.0 - 0.05 * i + (0.004 if i % 2 else 0)] for i, s in enumerate(range(100, 1001, 100))]
    assert overfitting(noisy) is None                                # still falling, with noise
    one_spike = [[s, v] for s, v in zip(range(100, 701, 100), [1.0, 0.6, 0.4, 0.41, 0.4, 0.39, 0.9])]
    assert overfitting(one_spike) is None                            # the last point alone rose
    flat_end = [[s, v] for s, v in zip(range(100, 701, 100), [1.0, 0.6, 0.4, 0.42, 0.44, 0.43, 0.45])]
    assert overfitting(flat_end) is None                             # within 10% of the fall of 0.6
    rose = [[s, v] for s, v in zip(range(100, 701, 100), [1.0, 0.6, 0.4, 0.45, 0.5, 0.55, 0.6])]
    assert overfitting(rose) == pytest.approx({"best_step": 300, "best": 0.4, "last_step": 700, "last": 0.6,
                                               "rise": 1 / 3})


def test_bold_marks_quality_columns_only():
    from imitate.report import table_rows

    header, rows = table_rows(_results())
    det, gmm = rows[0], rows[1]
    col = {name.rstrip(" ↑↓"): i for i, name in enumerate(header)}
    assert det[col["success"]].startswith("**") and gmm[col["energy distance"]].startswith("**")
    assert gmm[col["coverage"]].startswith("**") and not det[col["coverage"]].startswith("**")
    for name in ("train time (s)", "latency (ms)", "return", "parameters"):
        assert not any(r[col[name]].startswith("**") for r in rows), name


def test_the_trajectory_legend_says_which_colour_is_which_mode():
    from imitate.report import _figure, _trajectory_legend

    fig = _figure(6, 3)
    panels = [("gmm", [{"xy": [[0, 0]], "success": True, "mode": "left"}, {"xy": [[0, 0]], "success": False}])]
    _trajectory_legend(fig, {"left": "#4c72b0", "right": "#dd8452"}, panels)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["mode left", "mode right", "failed episode"]
    assert [h.get_color() for h in legend.legend_handles][:2] == ["#4c72b0", "#dd8452"]


def test_the_progress_line_estimates_the_time_left_from_the_work_done(tmp_path):
    from imitate.compare_runs import _overall

    jobs = [{"head": "gmm", "seed": s, "run_dir": str(tmp_path / f"s{s}"), "train": {"steps": 100}} for s in range(3)]
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "metrics.jsonl").write_text('{"step": 40, "train/loss": 1.0}\n{"step": 50, "train/loss": 0.9}\n')
    runs = {("gmm", 0): {"run_time_s": 100.0}, ("gmm", 2): {"_cached": True}}
    # work: seed 0 whole + half of seed 1 = 1.5 of the 2 runs not cached, in 60 s -> 20 s for the rest
    assert _overall(jobs, runs, [jobs[1]], 60.0) == "2/3 runs done, 60 s elapsed, 75% of the training work, about 20 s left"
    assert _overall(jobs, runs, [jobs[1]], 600.0).endswith("10 min elapsed, 75% of the training work, about 3 min left")
    assert _overall(jobs, {}, [], 5.0) == "0/3 runs done, 5 s elapsed"          # no work done yet: no guess
