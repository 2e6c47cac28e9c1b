"""Drive a 2-D task by hand in a pygame window and record demonstrations (``imitate teleop``).

The window shows the environment's ``rgb_array`` frame. The agent moves with the arrow keys or WASD
(full speed along each axis held), or towards the cursor while the left mouse button is held (it
stops on the cursor). Keys:

    SPACE       start an episode / stop it (a stopped or finished episode waits for ENTER or BACKSPACE)
    ENTER       keep the episode (stopping it first) and get ready for the next one
    BACKSPACE   discard the episode and get ready for the next one
    T           take over from the policy / hand back (human-gated DAgger, ``imitate dagger --gate human``)
    ESC         quit: the kept episodes are written, atomically, to the output file

One environment step runs per frame at ``fps`` frames per second (10 = the task's real time). The
event source is a plain callable returning a list of pygame events (``pygame.event.get`` by default),
so tests drive the window headless (``SDL_VIDEODRIVER=dummy``) with synthetic events.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imitate.errors import ConfigError, ImitateError

HELP = "SPACE start/stop  ENTER keep  BACKSPACE discard  T take over  ESC quit   move: arrows/WASD or hold the mouse"


def import_pygame():
    """pygame, or an ImitateError that says how to install it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise ImitateError("imitate teleop needs pygame: pip install pygame "
                           "(or, in the checkout, pip install -e '.[teleop]')") from None
    return pygame


class HumanInput:
    """pygame events -> commands (SPACE, ENTER, ...) and a 2-D action.

    Held keys and the mouse are tracked from the events themselves (``pygame.key.get_pressed`` does
    not see posted events), so synthetic events drive it exactly as a person does.
    """

    def __init__(self):
        pg = import_pygame()
        self.pg = pg
        self.moves = {pg.K_UP: (0, 1), pg.K_w: (0, 1), pg.K_DOWN: (0, -1), pg.K_s: (0, -1),
                      pg.K_LEFT: (-1, 0), pg.K_a: (-1, 0), pg.K_RIGHT: (1, 0), pg.K_d: (1, 0)}
        self.commands = {pg.K_SPACE: "start_stop", pg.K_RETURN: "keep", pg.K_KP_ENTER: "keep",
                         pg.K_BACKSPACE: "discard", pg.K_t: "takeover", pg.K_ESCAPE: "quit"}
        self.held: set[int] = set()
        self.mouse_down = False
        self.mouse_pos = (0, 0)

    def handle(self, events) -> list[str]:
        """Update the held keys and the mouse from ``events``; return the commands, in order."""
        pg, out = self.pg, []
        for e in events:
            if e.type == pg.QUIT:
                out.append("quit")
            elif e.type == pg.KEYDOWN:
                if e.key in self.moves:
                    self.held.add(e.key)
                elif e.key in self.commands:
                    out.append(self.commands[e.key])
            elif e.type == pg.KEYUP:
                self.held.discard(e.key)
            elif e.type == pg.MOUSEBUTTONDOWN and e.button == 1:
                self.mouse_down, self.mouse_pos = True, tuple(e.pos)
            elif e.type == pg.MOUSEBUTTONUP and e.button == 1:
                self.mouse_down = False
            elif e.type == pg.MOUSEMOTION:
                self.mouse_pos = tuple(e.pos)
        return out

    def action(self, agent_pos: np.ndarray, to_world: Callable[[tuple[int, int]], np.ndarray],
               step_size: float) -> np.ndarray:
        """Action (2,) float32 in [-1, 1]: the held keys, else towards the cursor (reaching it in one
        step where it is closer than ``step_size``, the distance of a full action), else 0."""
        if self.held:
            move = np.sum([self.moves[k] for k in self.held], axis=0).astype(np.float64)
        elif self.mouse_down:
            move = (to_world(self.mouse_pos) - np.asarray(agent_pos, np.float64)) / step_size
        else:
            move = np.zeros(2)
        return np.clip(move, -1.0, 1.0).astype(np.float32)


class Window:
    """A pygame window showing ``env.render()`` frames scaled by ``scale``, with status lines."""

    def __init__(self, env, scale: int = 2, caption: str = "imitate teleop"):
        pg = import_pygame()
        self.pg, self.env, self.scale = pg, env, scale
        if not hasattr(env.unwrapped, "pixel_to_world"):
            raise ConfigError(f"teleop drives 2-D tasks that map pixels to positions (imitate/ForkedPath-v0); "
                              f"{env.spec.id if env.spec else type(env.unwrapped).__name__} does not")
        size = env.unwrapped.RENDER_SIZE * scale
        try:
            pg.display.init()
            pg.display.set_caption(caption)
            self.screen = pg.display.set_mode((size, size + 40))
        except pg.error as e:
            raise ImitateError(f"teleop cannot open a window ({e}); it needs a display "
                               "(SDL_VIDEODRIVER=dummy runs it without one, for scripted events)") from None
        pg.font.init()
        self.font = pg.font.Font(None, 20)
        self.clock = pg.time.Clock()

    def to_world(self, pixel: tuple[int, int]) -> np.ndarray:
        return self.env.unwrapped.pixel_to_world(pixel[0] / self.scale, pixel[1] / self.scale)

    def show(self, lines: list[str], fps: float) -> None:
        """Draw the current frame and ``lines`` below it; wait for the next frame when ``fps`` > 0."""
        pg = self.pg
        frame = np.ascontiguousarray(self.env.render().swapaxes(0, 1))
        surface = pg.transform.scale_by(pg.surfarray.make_surface(frame), self.scale)
        self.screen.fill((20, 20, 20))
        self.screen.blit(surface, (0, 0))
        for i, line in enumerate(lines):
            self.screen.blit(self.font.render(line, True, (230, 230, 230)), (6, surface.get_height() + 4 + 18 * i))
        pg.display.flip()
        if fps > 0:
            self.clock.tick(fps)

    def close(self) -> None:
        self.pg.display.quit()


def _step_size(env) -> float:
    geo = getattr(env.unwrapped, "geometry", None)
    return float(geo.max_speed * geo.dt) if geo is not None else 1.0


def record(task: str, out: str | os.PathLike, *, env_kwargs: dict[str, Any] | None = None, seed: int = 0,
           fps: float = 10, overwrite: bool = False, events: Callable[[], list] | None = None,
           max_frames: int | None = None, scale: int = 2) -> dict[str, Any]:
    """Open the window, record episodes by hand until ESC, write the kept ones to ``out``.

    Episode k (counting discarded ones) starts from reset seed ``seed + k``. ``events`` replaces
    ``pygame.event.get``; ``max_frames`` stops the loop as ESC would. Returns a JSON-able summary:
    file (None when nothing was kept), episodes, transitions, success_rate.
    """
    from imitate.collect import obs_to_dict
    from imitate.data import Episode, make_env_args, write_demo_file
    from imitate.envs import make_env, to_env_action

    out = Path(out)
    if out.exists() and not overwrite:
        raise ImitateError(f"{out} already exists; pass --overwrite to replace it")
    pg = import_pygame()
    env = make_env(task, env_kwargs, render_mode="rgb_array")
    window, inp = Window(env), HumanInput()
    source = events or pg.event.get
    kept: list[Episode] = []
    attempt, state, steps, frame = 0, "ready", [], 0
    obs, info = env.reset(seed=seed)

    def finish(keep: bool) -> None:
        nonlocal attempt, state, steps, obs, info
        if keep and steps:
            keys = steps[0]["obs"].keys()
            kept.append(Episode(
                obs={k: np.stack([s["obs"][k] for s in steps]) for k in keys},
                next_obs={k: np.stack([s["next_obs"][k] for s in steps]) for k in keys},
                actions=np.stack([s["action"] for s in steps]),
                rewards=np.asarray([s["reward"] for s in steps], np.float32),
                dones=np.asarray([s["done"] for s in steps], np.uint8), name=f"demo_{len(kept)}", source=str(out),
                attrs={"seed": seed + attempt, "return": float(sum(s["reward"] for s in steps)), "teleop": True,
                       **({"is_success": bool(info["is_success"])} if "is_success" in info else {}),
                       **({"route": str(info["mode"])} if info.get("mode") is not None else {})}))
        attempt, state, steps = attempt + 1, "ready", []
        obs, info = env.reset(seed=seed + attempt)

    try:
        while max_frames is None or frame < max_frames:
            commands = inp.handle(source())
            quit_now = "quit" in commands
            for c in commands[:commands.index("quit")] if quit_now else commands:
                if c == "start_stop":
                    state = {"ready": "recording", "recording": "stopped"}.get(state, state)
                elif c in ("keep", "discard"):
                    finish(keep=c == "keep")
            if quit_now:
                break  # ESC: the commands before it count, nothing after
            if state == "recording":
                action = inp.action(obs_to_dict(obs)["agent_pos"], window.to_world, _step_size(env))
                next_obs, reward, terminated, truncated, info = env.step(to_env_action(env.action_space, action))
                steps.append({"obs": obs_to_dict(obs), "next_obs": obs_to_dict(next_obs), "action": action,
                              "reward": float(reward), "done": bool(terminated)})
                obs = next_obs
                if terminated or truncated:
                    state = "stopped"
            window.show([f"{state}   episode {attempt}   steps {len(steps)}   kept {len(kept)}", HELP], fps)
            frame += 1
    finally:
        window.close()
        env.close()
    if kept:
        write_demo_file(out, kept, make_env_args(task, env_kwargs), overwrite=overwrite, valid_fraction=0.0, seed=seed)
    successes = [ep.attrs["is_success"] for ep in kept if "is_success" in ep.attrs]
    return {"file": str(out) if kept else None, "episodes": len(kept), "transitions": sum(len(ep) for ep in kept),
            "success_rate": float(np.mean(successes)) if successes else None}


class HumanGate:
    """The gate of human-gated DAgger: a person watches the policy drive and presses T to take over
    (then drives with keys or mouse) and T again to hand back. ESC stops the run."""

    def __init__(self, task: str, env_kwargs: dict[str, Any] | None = None, events: Callable[[], list] | None = None,
                 fps: float = 10, scale: int = 2):
        self.pg = import_pygame()
        self.events, self.fps, self.scale = events or self.pg.event.get, fps, scale
        self.window: Window | None = None
        self.input = HumanInput()
        self.active = False

    def reset(self) -> None:
        self.active = False

    def step(self, env, obs, learner_action: np.ndarray) -> tuple[bool, np.ndarray | None]:
        """(the person drives this step, their action or None); ``env`` must render rgb_array frames."""
        from imitate.collect import obs_to_dict

        if self.window is None:
            self.window = Window(env, self.scale, caption="imitate dagger --gate human")
        for c in self.input.handle(self.events()):
            if c == "quit":
                raise ImitateError("human-gated DAgger stopped at the teleop window (ESC)")
            if c == "takeover":
                self.active = not self.active
        action = (self.input.action(obs_to_dict(obs)["agent_pos"], self.window.to_world, _step_size(env))
                  if self.active else None)
        status = "YOU DRIVE (T hands back)" if self.active else "policy drives (T takes over)"
        self.window.show([status, HELP], self.fps)
        return self.active, action

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
