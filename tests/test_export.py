"""Exported policies (ONNX, torch.export) for every head: same noise, same actions as PyTorch; a runtime
without torch; clear errors for bad inputs; act() as Policy.act; the `imitate export` command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from imitate.checkpoint import load_policy
from imitate.cli import main
from imitate.data import make_env_args, write_demo_file
from imitate.errors import ImitateError
from imitate.export.exporter import export_run
from imitate.export.runtime import load
from imitate.train import train
from policy_heads import available_heads
from tests.conftest import make_episode
from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

ROOT = Path(__file__).resolve().parent.parent
HEADS = sorted(TINY_HEADS)
# Two DDIM steps instead of four: the unrolled loop is still a loop, and the U-Net export costs half.
# The flow head is exported with its default ten steps here and with one step in its own test.
EXPORT_SETTINGS = {"diffusion": {"num_inference_steps": "2"}, "flow": {"num_inference_steps": "10"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A two-step tiny run of every head on synthetic demonstrations (obs keys pos, goal)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export_runs")
    rng = np.random.default_rng(0)
    data = root / "demos.hdf5"
    write_demo_file(data, [make_episode(rng, n, name=f"demo_{i}") for i, n in enumerate([12, 9, 15, 7])],
                    make_env_args("imitate/ForkedPath-v0", {}), valid_fraction=0.25)
    out = {}
    for head in HEADS:
        settings = {**TINY_HEADS[head], **EXPORT_SETTINGS.get(head, {})}
        train(tiny_config(data, root / head, head, steps=2, val_every=0, log_every=1, ckpt_every=2),
              settings, dict(TINY_ENCODER), progress=False)
        out[head] = root / head
    return out


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """Every head exported once, both formats in one folder (one trace)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("exported")
    return {head: (export_run(run, root / head, ["onnx", "torch"]), root / head) for head, run in runs.items()}


def observations(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=(batch, 2, 2)).astype(np.float32) for k in ("pos", "goal")}


def test_every_head_has_a_noise_spec_and_is_covered():
    assert set(HEADS) == set(available_heads())


@pytest.mark.parametrize("head", HEADS)
def test_exported_models_match_eager_pytorch_given_the_same_noise(runs, exported, head):
    meta, folder = exported[head]
    assert set(os.listdir(folder)) == {"model.onnx", "model.pt2", "export.json"}
    assert meta["models"] == {"onnx": "model.onnx", "torch": "model.pt2"} and meta["head"] == head
    policy = load_policy(runs[head])
    for backend in ("onnx", "torch"):
        model = load(folder, backend, threads=1)
        for batch in (1, 3):
            obs = observations(batch, seed=batch)
            # The eager path, unchanged: predict_chunk draws the head's noise from this generator ...
            eager = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(batch))
            # ... and the same draws, given to the exported graph as inputs, give the same actions.
            noise = {k: v.numpy() for k, v in policy.head.draw_noise(batch, torch.Generator().manual_seed(batch)).items()}
            got = model.predict_chunk(obs, noise=noise)
            assert got.shape == (batch, 4, 2) and got.dtype == np.float32
            np.testing.assert_allclose(got, eager, atol=1e-4, rtol=0, err_msg=f"{head} {backend} batch {batch}")


@pytest.mark.parametrize("objective, prediction, steps", [("shortcut", "sample", 1), ("flow", "velocity", 1),
                                                          ("meanflow", "sample", 1), ("meanflow", "sample", 10),
                                                          ("meanflow", "velocity", 1)])
def test_few_step_flow_exports_match_eager_pytorch(runs, tmp_path, objective, prediction, steps):
    """K = 1 (one network call) for every objective and output, K = 10 for meanflow; the ten-step export of the
    default objective is covered above."""
    data = runs["flow"].parent / "demos.hdf5"
    run = tmp_path / "run"
    train(tiny_config(data, run, "flow", steps=2, val_every=0, log_every=1, ckpt_every=2),
          {**TINY_HEADS["flow"], "objective": objective, "prediction_type": prediction, "num_inference_steps": str(steps)},
          dict(TINY_ENCODER), progress=False)
    meta = export_run(run, tmp_path / "exported", ["onnx"])
    assert meta["head_config"]["num_inference_steps"] == steps and meta["head_config"]["objective"] == objective
    policy, model = load_policy(run), load(tmp_path / "exported", "onnx", threads=1)
    for batch in (1, 3):
        obs = observations(batch, seed=batch)
        eager = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(batch))
        noise = {k: v.numpy() for k, v in policy.head.draw_noise(batch, torch.Generator().manual_seed(batch)).items()}
        np.testing.assert_allclose(model.predict_chunk(obs, noise=noise), eager, atol=1e-4, rtol=0)


def test_autoregressive_joint_tokens_export_matches_eager_pytorch(runs, tmp_path):
    """One token per step (dims_per_token = A): the decoding loop and the token -> action mapping export exactly."""
    run = tmp_path / "run"
    train(tiny_config(runs["autoregressive"].parent / "demos.hdf5", run, "autoregressive", steps=2, val_every=0, log_every=1,
                      ckpt_every=2), {**TINY_HEADS["autoregressive"], "dims_per_token": "2"}, dict(TINY_ENCODER), progress=False)
    export_run(run, tmp_path / "exported", ["onnx"])
    policy, model = load_policy(run), load(tmp_path / "exported", "onnx", threads=1)
    assert policy.head.num_tokens == 4
    for batch in (1, 3):
        obs = observations(batch, seed=batch)
        eager = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(batch))
        noise = {k: v.numpy() for k, v in policy.head.draw_noise(batch, torch.Generator().manual_seed(batch)).items()}
        np.testing.assert_allclose(model.predict_chunk(obs, noise=noise), eager, atol=1e-4, rtol=0)


@pytest.mark.parametrize("head", ["gaussian", "gmm", "autoregressive", "diffusion", "flow"])
def test_runtime_draws_fresh_noise_and_a_seed_repeats_it(exported, head):
    _, folder = exported[head]
    obs = observations(2)
    a, b = load(folder, seed=1).predict_chunk(obs), load(folder, seed=1).predict_chunk(obs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, load(folder, seed=2).predict_chunk(obs))


def test_metadata_describes_inputs_horizons_bounds_and_versions(exported):
    meta, folder = exported["gmm"]
    assert json.loads((folder / "export.json").read_text()) == meta
    assert [i["name"] for i in meta["inputs"]] == ["goal", "pos", "noise_component", "noise_normal"]
    noise = {i["key"]: (i["shape"], i["distribution"]) for i in meta["inputs"] if i["kind"] == "noise"}
    assert noise == {"component": (["batch", 3], "exponential"), "normal": (["batch", 8], "normal")}
    assert meta["output"] == {"name": "actions", "shape": ["batch", 4, 2], "dtype": "float32"}
    assert (meta["obs_horizon"], meta["action_horizon"], meta["action_dim"], meta["n_act"]) == (2, 4, 2, 2)
    low, high = np.asarray(meta["action_bounds"]["low"]), np.asarray(meta["action_bounds"]["high"])
    assert low.shape == (2,) and (low < high).all() and low.min() >= -1 and high.max() <= 1
    assert {"torch", "onnx", "onnxscript", "onnx_opset", "imitate", "numpy"} <= set(meta["versions"])
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i["name"] for i in meta["inputs"]]
    assert all(i.shape[0] not in (1, 2) for i in session.get_inputs())  # the batch dimension is symbolic


@pytest.mark.parametrize("head", ["deterministic", "diffusion"])
def test_bad_inputs_get_errors_that_name_the_key(exported, head):
    model = load(exported[head][1], seed=0)
    good = observations(2)
    with pytest.raises(ImitateError, match=r"lacks key\(s\) \['goal'\].*reads \['goal', 'pos'\]"):
        model.predict_chunk({"pos": good["pos"]})
    with pytest.raises(ImitateError, match=r"'pos' has shape \(2, 3, 2\); expected \(B, 2, 2\)"):
        model.predict_chunk({**good, "pos": np.zeros((2, 3, 2), np.float32)})
    with pytest.raises(ImitateError, match=r"'goal' has shape \(2, 2\); expected \(B, 2, 2\)"):
        model.predict_chunk({**good, "goal": np.zeros((2, 2), np.float32)})
    with pytest.raises(ImitateError, match=r"'pos' has batch size 3, other keys 2"):
        model.predict_chunk({**good, "pos": np.zeros((3, 2, 2), np.float32)})
    for bad in (np.array([["a", "b"]] * 2), np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), complex)):
        with pytest.raises(ImitateError, match=rf"'pos' has dtype {bad.dtype}; .*real numbers"):
            model.predict_chunk({**good, "pos": bad})
    with pytest.raises(ImitateError, match="dict of arrays keyed by"):
        model.predict_chunk(good["pos"])
    with pytest.raises(ImitateError, match=r"noise \['extra'\] is not an input"):
        model.predict_chunk(good, noise={"extra": np.zeros(3)})
    if head == "diffusion":
        with pytest.raises(ImitateError, match=r"noise 'normal' has shape \(2, 3, 2\); expected \(2, 4, 2\)"):
            model.predict_chunk(good, noise={"normal": np.zeros((2, 3, 2), np.float32)})
    # Other real dtypes are converted (as Policy.predict_chunk does) and give the same actions.
    np.testing.assert_array_equal(model.predict_chunk({k: v.astype(np.float64) for k, v in good.items()},
                                                      noise={"normal": np.zeros((2, 4, 2))} if head == "diffusion" else None),
                                  model.predict_chunk(good, noise={"normal": np.zeros((2, 4, 2), np.float32)}
                                                      if head == "diffusion" else None))


def test_load_errors_name_the_folder(exported, tmp_path):
    with pytest.raises(ImitateError, match="not an exported policy"):
        load(tmp_path)
    meta, folder = exported["deterministic"]
    (tmp_path / "export.json").write_text(json.dumps({**meta, "models": {"torch": "model.pt2"}}))
    with pytest.raises(ImitateError, match=r"has no 'onnx' model"):
        load(tmp_path, "onnx")
    with pytest.raises(ImitateError, match="model.pt2 is missing"):
        load(tmp_path)


def _meta(**changes):
    """A minimal export.json (what a runtime reads) with some fields changed; None removes one."""
    meta = {"format": "imitate-export/1", "models": {"onnx": "model.onnx"}, "head": "gmm",
            "inputs": [{"name": "pos", "kind": "obs", "key": "pos", "shape": ["batch", 2, 2], "dtype": "float32"},
                       {"name": "noise_normal", "kind": "noise", "key": "normal", "shape": ["batch", 4, 2],
                        "dtype": "float32", "distribution": "normal"}],
            "obs_keys": ["pos"], "obs_shapes": {"pos": [2]}, "obs_horizon": 2, "action_horizon": 4, "action_dim": 2,
            "n_act": 2, "temporal_ensemble": None}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


@pytest.mark.parametrize("field,value", [
    ("models", None), ("models", {}), ("models", {"onnx": "../elsewhere/model.onnx"}), ("obs_horizon", None),
    ("obs_horizon", 0), ("obs_keys", None), ("obs_shapes", {"goal": [2]}), ("action_horizon", "4"),
    ("action_dim", 0), ("n_act", 0), ("n_act", 5), ("n_act", True), ("temporal_ensemble", float("nan")),
    ("inputs", [{"kind": "noise", "key": "normal", "shape": ["batch", 4, 2], "distribution": "cauchy"}]),
])
def test_export_json_fields_are_checked_before_use(tmp_path, field, value):
    """A missing or impossible field was a KeyError at load, or an IndexError inside act (n_act 0 or > Ta)."""
    meta = _meta(**{field: value})
    if value is None:
        meta.pop(field, None)
    (tmp_path / "export.json").write_text(json.dumps(meta))
    with pytest.raises(ImitateError, match=rf"export.json: field '{field}' is") as err:
        load(tmp_path)
    assert str(tmp_path / "export.json") in str(err.value)
    (tmp_path / "export.json").write_text(json.dumps(_meta()))
    with pytest.raises(ImitateError, match="model.onnx is missing"):  # a whole export.json passes its check
        load(tmp_path)


def test_runtime_refuses_nan_and_inf_observations_by_key(exported):
    """They gave NaN actions without a word."""
    model = load(exported["deterministic"][1], seed=0)
    good = observations(2)
    for bad in (np.nan, np.inf, -np.inf):
        obs = {**good, "goal": good["goal"].copy()}
        obs["goal"][1, 0, 0] = bad
        with pytest.raises(ImitateError, match=r"observation 'goal' holds NaN or inf \(batch index 1\)"):
            model.predict_chunk(obs)
    model.reset()
    model.act({"pos": np.zeros(2), "goal": np.zeros(2)})  # a chunk planned: the next step only pops the queue
    with pytest.raises(ImitateError, match="observation 'pos' holds NaN or inf"):
        model.act({"pos": np.array([np.nan, 0.0]), "goal": np.zeros(2)})


@pytest.mark.parametrize("ensemble", [None, 0.5])
def test_act_follows_policy_act_given_the_same_noise(runs, exported, monkeypatch, ensemble):
    """The same observations and noise give the same actions step by step, re-planning on the same steps."""
    policy, model = load_policy(runs["diffusion"]), load(exported["diffusion"][1], threads=1, seed=0)
    policy.temporal_ensemble = model.temporal_ensemble = ensemble
    drawn = []
    original = model._draw
    monkeypatch.setattr(model, "_draw", lambda shape, dist: drawn.append(original(shape, dist)) or drawn[-1])
    replay = []
    monkeypatch.setattr(policy.head, "draw_noise", lambda batch, *a, **k: {"normal": torch.from_numpy(replay.pop(0))})
    rng = np.random.default_rng(3)
    for episode in range(2):
        policy.reset(), model.reset()
        planned_at = []
        for t in range(7):
            step = {"pos": rng.normal(size=2), "goal": rng.normal(size=2)}  # float64, as environments give
            before = len(drawn)
            got = model.act(step)
            if len(drawn) > before:
                planned_at.append(t)
                replay.append(drawn[-1])
            np.testing.assert_allclose(got, policy.act(step), atol=1e-4, rtol=0)
            assert got.shape == (2,) and not replay
        assert planned_at == (list(range(7)) if ensemble else [0, 2, 4, 6])  # n_act = 2
    # N environments at once: (N, *shape) per key -> (N, A)
    model.reset()
    assert model.act({"pos": np.zeros((3, 2)), "goal": np.zeros((3, 2))}).shape == (3, 2)


def test_runtime_works_where_torch_cannot_be_imported(runs, exported, tmp_path):
    """Every head's ONNX export runs in a process that cannot import torch, and gives PyTorch's actions."""
    cases = {}
    for head in HEADS:
        policy = load_policy(runs[head])
        obs = observations(2, seed=5)
        noise = {k: v.numpy() for k, v in policy.head.draw_noise(2, torch.Generator().manual_seed(5)).items()}
        cases[head] = str(exported[head][1])
        np.savez(tmp_path / f"{head}.npz", expected=policy.predict_chunk(obs, generator=torch.Generator().manual_seed(5)),
                 **{f"obs_{k}": v for k, v in obs.items()}, **{f"noise_{k}": v for k, v in noise.items()})
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        import numpy as np

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this process")

        sys.meta_path.insert(0, NoTorch())
        try:
            import torch
            raise SystemExit("torch was importable")
        except ImportError:
            pass
        import imitate.export.runtime as runtime
        errors = {{}}
        for head, folder in {cases!r}.items():
            data = np.load({str(tmp_path)!r} + f"/{{head}}.npz")
            obs = {{k[4:]: data[k] for k in data.files if k.startswith("obs_")}}
            noise = {{k[6:]: data[k] for k in data.files if k.startswith("noise_")}}
            model = runtime.load(folder, threads=1, seed=0)
            errors[head] = float(np.abs(model.predict_chunk(obs, noise=noise) - data["expected"]).max())
            model.reset()
            assert model.act({{k: v[0, -1] for k, v in obs.items()}}).shape == (2,)
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
        print(json.dumps(errors))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(errors) == set(HEADS) and max(errors.values()) <= 1e-4, errors


def test_importing_the_runtime_or_the_package_imports_no_torch():
    code = ("import sys, imitate, imitate.export, imitate.export.runtime; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'policy_heads')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_cli_export_end_to_end_and_its_errors(runs, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(runs["gmm"]), "--format", "onnx", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"] == {"onnx": "model.onnx"} and printed["inputs"][-2:] == ["noise_component", "noise_normal"]
    assert load(out, seed=0).predict_chunk(observations(4)).shape == (4, 4, 2)
    assert main(["export", str(runs["gmm"]), "--format", "torch", "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 1
    assert "no such run directory" in capsys.readouterr().err
