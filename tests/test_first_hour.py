"""What a new user meets first: the version flag, a checkout that shadows the package, file modes
that follow the umask, a video writer checked before the rollouts."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import imitate
from imitate.errors import ImitateError

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_version(capsys):
    from imitate.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"imitate {imitate.__version__}"


# An editable install serves imitate's modules through a finder on sys.path's meta path, which
# Python consults only after the path entries: this one does the same for the checkout under test.
_EDITABLE_LIKE = f"""
import importlib.abc, importlib.machinery, runpy, sys
ROOT = {str(ROOT)!r}
sys.path[:] = [p for p in sys.path if p.rstrip('/') != ROOT]
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.count('.') == 1 and name.startswith('imitate.'):
            return importlib.machinery.PathFinder.find_spec(name, [ROOT + '/imitate'])
        return None
sys.meta_path.insert(0, Finder())
sys.argv = ['imitate', '--version']
runpy.run_module('imitate', run_name='__main__', alter_sys=True)
"""


def test_a_checkout_named_imitate_in_the_current_folder_is_reported(tmp_path):
    shadow = tmp_path / "imitate"
    shadow.mkdir()
    (shadow / "README.md").write_text("a checkout\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", _EDITABLE_LIKE], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(shadow) in res.stderr and "Run the command from another folder" in res.stderr


def test_the_package_itself_is_not_reported_as_shadowed():
    from imitate.__main__ import shadowing_folder

    assert shadowing_folder() is None


# -- file modes -------------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomically_written_files_follow_the_umask(tmp_path, umask_022):
    from imitate.checkpoint import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    assert _mode(tmp_path / "a.json") == 0o644
    os.umask(0o077)
    write_json(tmp_path / "b.json", {"x": 1})
    write_json(tmp_path / "a.json", {"x": 2})              # replacing a file gives it the new file's mode
    assert _mode(tmp_path / "b.json") == 0o600 and _mode(tmp_path / "a.json") == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_run_directory_its_export_and_a_demo_file_are_0644_under_umask_022(tmp_path, demo_file, umask_022):
    from imitate.data import load_demo_file, write_demo_file
    from imitate.export import export_run
    from imitate.train import train
    from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

    run = tmp_path / "run"
    train(tiny_config(demo_file, run, "deterministic"), TINY_HEADS["deterministic"], TINY_ENCODER, progress=False)
    written = [run / n for n in ("config.json", "model.safetensors", "train_state.safetensors")]
    export_run(run, tmp_path / "export", formats=("torch",))
    written += [p for p in (tmp_path / "export").iterdir()]
    store = load_demo_file(demo_file)
    written.append(write_demo_file(tmp_path / "copy.hdf5", [store.episode(i) for i in range(store.n_episodes)]))
    assert len(written) >= 6
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(0o644) for p in written}


# -- the video writer is checked before rolling out -----------------------------------------------------
class _CountingPolicy:
    """Stands in for a policy: counts the calls that a rollout would make."""

    def __init__(self):
        import torch

        self.device = torch.device("cpu")
        self.calls = 0

    def eval(self):
        self.calls += 1
        return self

    def reset(self):
        self.calls += 1

    def act(self, obs, generator=None, deterministic=False):
        self.calls += 1
        raise AssertionError("a rollout started although the video cannot be written")


def test_a_missing_mp4_writer_fails_before_any_rollout(tmp_path, monkeypatch):
    import imageio.v2 as imageio

    from imitate.evaluate import evaluate

    def no_backend(path, *args, **kwargs):            # what imageio says without imageio-ffmpeg
        raise ValueError(f"Could not find a backend to open `{path}`` with iomode `wI`.")

    monkeypatch.setattr(imageio, "mimsave", no_backend)
    policy = _CountingPolicy()
    with pytest.raises(ImitateError, match=r"out\.mp4.*pip install imageio-ffmpeg.*\.gif") as error:
        evaluate(policy, "imitate/ForkedPath-v0", None, episodes=3, video=str(tmp_path / "out.mp4"), progress=False)
    assert policy.calls == 0 and "Nothing was rolled out" in str(error.value)
    assert not (tmp_path / "out.mp4").exists()


def test_video_paths_without_a_writer_or_an_extension_are_refused_and_gif_passes(tmp_path):
    from imitate.evaluate import check_video_writer

    check_video_writer(tmp_path / "ok.gif")
    assert list(tmp_path.iterdir()) == []                 # the probe leaves nothing behind
    with pytest.raises(ImitateError, match="extension"):
        check_video_writer(tmp_path / "rollout")
    with pytest.raises(ImitateError, match=r"\.xyz"):
        check_video_writer(tmp_path / "rollout.xyz")

