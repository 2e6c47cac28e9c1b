"""Camera observations of the planar tasks: top-down uint8 images drawn with NumPy, and the
``obs_mode`` setting that chooses between the state, the image or both.

A `Canvas` maps the arena square [-half, half]^2 onto an S x S image (row 0 at the top, y pointing
up) with a margin of ``margin`` pixels on each side. Discs are drawn anti-aliased (the covered share
of each pixel blends the colour in), so that a position moving by less than a pixel still changes
the image; rectangles are drawn with hard edges. Everything is vectorized over the few pixels an
object covers: an 84 x 84 frame of ForkedPath or BlockPush takes about 0.1 ms, ReacherModes' (two
capsules, `Canvas.segment`, for the links of its arm) about 0.45 ms (benchmarks/visual_bc.py speed).

    obs_mode "state"        the task's state dict, unchanged (default)
             "image"        {"image": (S, S, 3) uint8} only
             "state+image"  the state dict plus "image"

With "image" a task's `state_obs()` still returns the state dict: scripted experts label from it
(`imitate.envs.experts.expert_view`).
"""
from __future__ import annotations

import numpy as np

#: The values of the ``obs_mode`` environment argument.
OBS_MODES = ("state", "image", "state+image")
#: The observation key of the camera image.
IMAGE_KEY = "image"
#: Environment arguments that choose what the task shows, not how it behaves (experts ignore them).
VIEW_KWARGS = ("obs_mode", "image_size")


def check_view(task: str, obs_mode: str, image_size: int) -> tuple[str, int]:
    """``(obs_mode, image_size)`` checked: a ValueError naming the value and the choices otherwise."""
    if obs_mode not in OBS_MODES:
        raise ValueError(f"{task}: obs_mode={obs_mode!r} is not supported; choose one of {list(OBS_MODES)}")
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        size = 0
    if size != image_size or not 16 <= size <= 1024:
        raise ValueError(f"{task}: image_size={image_size!r} must be a whole number of pixels from 16 to 1024")
    return obs_mode, size


def observe(obs_mode: str, state_obs, image) -> dict[str, np.ndarray]:
    """An observation as ``obs_mode`` says: the state dict (``state_obs()``), the ``image`` alone, or both."""
    if obs_mode == "state":
        return state_obs()
    obs = {} if obs_mode == "image" else state_obs()
    obs[IMAGE_KEY] = image()
    return obs


def image_space(size: int):
    """The gymnasium Box of an (size, size, 3) uint8 image."""
    import gymnasium as gym

    return gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)


class Canvas:
    """Pixel geometry of a square top-down view of the arena [-half, half]^2.

    Args:
        size: image height and width in pixels.
        half: half the side of the arena in world units.
        margin: pixels left around the arena on each side.
    """

    def __init__(self, size: int, half: float, margin: float = 2.0):
        self.size, self.half, self.margin = int(size), float(half), float(margin)
        self.scale = (self.size - 2.0 * self.margin) / (2.0 * self.half)
        """Pixels per world unit."""
        self._blanks: dict[tuple[int, ...], np.ndarray] = {}

    def to_pixel(self, xy) -> tuple[float, float]:
        """(column, row) in continuous pixel coordinates of the world point ``xy``: pixel (c, r) covers
        [c, c + 1) x [r, r + 1), so ``int()`` of each gives the pixel that holds the point."""
        x, y = float(xy[0]), float(xy[1])
        return (x + self.half) * self.scale + self.margin, (self.half - y) * self.scale + self.margin

    def blank(self, colour) -> np.ndarray:
        """A new (size, size, 3) uint8 image filled with ``colour`` (copied from a cached one)."""
        key = tuple(int(c) for c in colour)
        cached = self._blanks.get(key)
        if cached is None:
            cached = self._blanks[key] = np.tile(np.asarray(key, np.uint8), (self.size, self.size, 1))
        return cached.copy()

    def rect(self, img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
        """Fill the pixels whose centres lie in the world rectangle [x0, x1] x [y0, y1]."""
        c0, r1 = self.to_pixel((x0, y0))
        c1, r0 = self.to_pixel((x1, y1))
        cols = slice(max(0, int(np.ceil(c0 - 0.5))), max(0, int(np.floor(c1 - 0.5)) + 1))
        rows = slice(max(0, int(np.ceil(r0 - 0.5))), max(0, int(np.floor(r1 - 0.5)) + 1))
        img[rows, cols] = colour

    def frame(self, img: np.ndarray, colour, width: int = 1) -> None:
        """The arena's wall: a ``width``-pixel line just outside the arena square."""
        lo = int(np.floor(self.margin)) - width
        hi = int(np.ceil(self.size - self.margin))
        lo, hi = max(lo, 0), min(hi, self.size - width)
        img[lo:lo + width, lo:hi + width] = colour
        img[hi:hi + width, lo:hi + width] = colour
        img[lo:hi + width, lo:lo + width] = colour
        img[lo:hi + width, hi:hi + width] = colour

    def disc(self, img: np.ndarray, centre, radius: float, colour, min_pixels: float = 1.5) -> None:
        """Blend an anti-aliased disc of world ``radius`` (at least ``min_pixels`` pixels) at
        ``centre`` into ``img``: each pixel takes the colour in proportion to how far inside the
        edge its centre lies (full inside radius - 0.5 pixels, none beyond radius + 0.5)."""
        cu, cv = self.to_pixel(centre)
        r = max(radius * self.scale, min_pixels)
        c0, c1 = max(0, int(cu - r - 1)), min(self.size, int(cu + r + 2))
        r0, r1 = max(0, int(cv - r - 1)), min(self.size, int(cv + r + 2))
        if c0 >= c1 or r0 >= r1:
            return
        du = np.arange(c0, c1) + 0.5 - cu
        dv = np.arange(r0, r1) + 0.5 - cv
        dist = np.sqrt(dv[:, None] ** 2 + du[None, :] ** 2)
        alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)[..., None]
        patch = img[r0:r1, c0:c1].astype(np.float32)
        img[r0:r1, c0:c1] = (patch + alpha * (np.asarray(colour, np.float32) - patch) + 0.5).astype(np.uint8)

    def segment(self, img: np.ndarray, start, end, radius: float, colour, min_pixels: float = 1.0) -> None:
        """Blend an anti-aliased capsule (the points within world ``radius`` of the segment ``start`` ->
        ``end``, at least ``min_pixels`` pixels) into ``img``, edges as in `disc`."""
        a = np.asarray(self.to_pixel(start))
        b = np.asarray(self.to_pixel(end))
        r = max(radius * self.scale, min_pixels)
        lo = np.maximum(np.floor(np.minimum(a, b) - r - 1), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(a, b) + r + 2), self.size).astype(int)
        if (lo >= hi).any():
            return
        du = (np.arange(lo[0], hi[0]) + 0.5 - a[0])[None, :]            # pixel centres relative to start
        dv = (np.arange(lo[1], hi[1]) + 0.5 - a[1])[:, None]
        ab = b - a
        t = np.clip((du * ab[0] + dv * ab[1]) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        dist = np.sqrt((du - t * ab[0]) ** 2 + (dv - t * ab[1]) ** 2)
        alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)[..., None]
        patch = img[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
        img[lo[1]:hi[1], lo[0]:hi[0]] = (patch + alpha * (np.asarray(colour, np.float32) - patch) + 0.5).astype(np.uint8)


def stored_state(task: str, state, size: int) -> np.ndarray:
    """``reset(options={"state": ...})`` of a task: the stored state as a float64 vector of ``size``
    finite values, or a ValueError naming the task and what is wrong."""
    try:
        state = np.asarray(state, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{task}: options['state'] must be a vector of {size} numbers, got {state!r}") from None
    if state.shape != (size,):
        raise ValueError(f"{task}: options['state'] has {state.size} values; this task's states have {size} "
                         f"(was the file recorded from another task?)")
    if not np.all(np.isfinite(state)):
        raise ValueError(f"{task}: options['state'] holds non-finite values")
    return state
