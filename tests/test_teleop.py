"""imitate teleop, headless: synthetic pygame events record episodes into an ordinary demo file."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pygame = pytest.importorskip("pygame", reason="teleop needs pygame (the dev extra installs it)")

from imitate.data import load_demo_file  # noqa: E402
from imitate.errors import ImitateError  # noqa: E402
from imitate.teleop import HumanInput, import_pygame, record  # noqa: E402

TASK = "imitate/ForkedPath-v0"


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def key(kind, k):
    return pygame.event.Event(kind, key=k)


def scripted(frames: dict[int, list]):
    """An event source that posts frame k's events to pygame's queue and reads the queue back."""
    state = {"frame": 0}

    def source():
        for event in frames.get(state["frame"], []):
            pygame.event.post(event)
        state["frame"] += 1
        return pygame.event.get()
    return source


def test_keyboard_episode_is_recorded_kept_and_written(tmp_path):
    out = tmp_path / "teleop.hdf5"
    frames = {0: [key(pygame.KEYDOWN, pygame.K_SPACE), key(pygame.KEYDOWN, pygame.K_UP)],   # start, hold UP
              10: [key(pygame.KEYUP, pygame.K_UP), key(pygame.KEYDOWN, pygame.K_RETURN)],   # keep after 10 steps
              11: [key(pygame.KEYDOWN, pygame.K_SPACE), key(pygame.KEYDOWN, pygame.K_RIGHT)],
              15: [key(pygame.KEYDOWN, pygame.K_BACKSPACE)],                                # discard the second
              16: [key(pygame.KEYDOWN, pygame.K_ESCAPE)]}
    summary = record(TASK, out, seed=7, fps=0, events=scripted(frames), max_frames=100)
    assert summary["episodes"] == 1 and summary["transitions"] == 10 and summary["file"] == str(out)
    store = load_demo_file(out)
    assert store.n_episodes == 1 and len(store) == 10
    rows = np.arange(10)
    np.testing.assert_array_equal(store.get("actions", rows), np.tile([0.0, 1.0], (10, 1)).astype(np.float32))
    pos, nxt = store.get("obs/agent_pos", rows), store.get("next_obs/agent_pos", rows)
    np.testing.assert_allclose(nxt - pos, np.tile([0.0, 0.04], (10, 1)), atol=1e-6)  # UP at full speed
    np.testing.assert_array_equal(pos[1:], nxt[:-1])
    assert store.demo_attrs[0]["seed"] == 7 and store.demo_attrs[0]["teleop"] is True
    assert store.env_args["env_name"] == TASK


def test_mouse_drives_towards_the_cursor_and_stops_on_it(tmp_path):
    out = tmp_path / "mouse.hdf5"
    frames = {0: [key(pygame.KEYDOWN, pygame.K_SPACE),
                  pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(384, 256 + 100))],  # right of start
              30: [pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(384, 356)),
                   key(pygame.KEYDOWN, pygame.K_SPACE), key(pygame.KEYDOWN, pygame.K_RETURN),
                   key(pygame.KEYDOWN, pygame.K_ESCAPE)]}
    summary = record(TASK, out, fps=0, events=scripted(frames), max_frames=100)
    assert summary["transitions"] == 30
    store = load_demo_file(out)
    actions = store.get("actions", np.arange(30))
    assert actions[0, 0] == 1.0 and actions[0, 1] > 0  # heads right and up towards the cursor
    from imitate.envs.forked_path import ForkedPathEnv
    target = ForkedPathEnv().pixel_to_world(384 / 2, 356 / 2)
    np.testing.assert_allclose(store.get("next_obs/agent_pos", np.array([29])), target[None], atol=1e-5)


def test_quit_without_keeping_writes_nothing_and_existing_files_are_kept(tmp_path):
    out = tmp_path / "none.hdf5"
    frames = {0: [key(pygame.KEYDOWN, pygame.K_SPACE), key(pygame.KEYDOWN, pygame.K_UP)],
              3: [pygame.event.Event(pygame.QUIT)]}
    assert record(TASK, out, fps=0, events=scripted(frames))["file"] is None and not out.exists()
    out.write_bytes(b"keep me")
    with pytest.raises(ImitateError, match="already exists"):
        record(TASK, out, fps=0, events=scripted({}))
    assert out.read_bytes() == b"keep me"


def test_take_over_key_toggles_and_missing_pygame_is_a_clear_error(monkeypatch):
    inp = HumanInput()
    assert inp.handle([key(pygame.KEYDOWN, pygame.K_t), key(pygame.KEYDOWN, pygame.K_a),
                       key(pygame.KEYDOWN, pygame.K_w)]) == ["takeover"]
    np.testing.assert_array_equal(inp.action(np.zeros(2), lambda p: np.zeros(2), 0.04), [-1.0, 1.0])
    inp.handle([key(pygame.KEYUP, pygame.K_a), key(pygame.KEYUP, pygame.K_w)])
    np.testing.assert_array_equal(inp.action(np.zeros(2), lambda p: np.zeros(2), 0.04), [0.0, 0.0])
    monkeypatch.setitem(sys.modules, "pygame", None)
    with pytest.raises(ImitateError, match="pip install"):
        import_pygame()


def test_human_gated_dagger_keeps_the_persons_segments(tmp_path):
    from imitate.algos.dagger import dagger_config, dagger

    # round 1's single rollout: the person takes over at its 3rd step, drives right for 5 steps, hands back
    frames = {2: [key(pygame.KEYDOWN, pygame.K_t), key(pygame.KEYDOWN, pygame.K_RIGHT)],
              7: [key(pygame.KEYUP, pygame.K_RIGHT), key(pygame.KEYDOWN, pygame.K_t)]}
    cfg = dagger_config(out=str(tmp_path / "hg"), head="gaussian", rounds=1, episodes_per_round=1, initial_demos=2,
                       steps=10, steps_per_round=5, batch_size=8, action_horizon=4, n_act=2, eval_episodes=1,
                       gate="human", teleop_fps=0, head_config={"hidden_dims": "32"})
    results = dagger(cfg, progress=False, events=scripted(frames))
    assert results[1]["new_labels"] == 5
    store = load_demo_file(results[1]["data"])
    human = [i for i, a in enumerate(store.demo_attrs) if a["kind"] == "hg_dagger"]
    assert len(human) == 1 and store.demo_attrs[human[0]]["segment_start"] == 2
    rows = np.arange(store.episode_starts[human[0]], store.episode_ends[human[0]])
    np.testing.assert_array_equal(store.get("actions", rows), np.tile([1.0, 0.0], (5, 1)).astype(np.float32))
    assert json.loads((tmp_path / "hg" / "rounds.jsonl").read_text().splitlines()[1])["expert_labels"] == len(store)
