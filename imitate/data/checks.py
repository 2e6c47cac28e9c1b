"""Checks of demonstration data that report every problem of a file at once.

A reader adds what it finds to a `Problems` list and raises one `DemoFileError` at the end. One
problem reads as one line; several are listed, the first `SHOWN` of them:

    demo_7 in lift.hdf5: actions holds NaN or inf at step 15

    lift.hdf5: 3 problems
      demo_0: missing key 'obs/goal' (demo_1 has it)
      demo_4: next_obs/pos has per-step shape (3,) but obs/pos has (2,)
      demo_7: actions holds NaN or inf at step 15

The field checks here serve `imitate.data.episode.Episode` (arrays in memory) and the file scan
(`imitate.data.hdf5.scan_demo_file`, shapes and dtypes from metadata) alike.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from imitate.errors import DemoFileError

#: Problems written out in full in one error; the rest are counted.
SHOWN = 10
#: Numeric dtype kinds a demonstration may hold: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"


class Problems:
    """The problems found in one source (a file, or ``<memory>``), each with the demo it concerns."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[tuple[str | None, str]] = []

    def add(self, where: str | None, message: str) -> None:
        """One problem; ``where`` names the demo (None: the file as a whole)."""
        self.items.append((where, message))

    def __len__(self) -> int:
        return len(self.items)

    def lines(self) -> list[str]:
        return [f"{where}: {message}" if where else message for where, message in self.items]

    def error(self) -> DemoFileError:
        """One DemoFileError listing every problem (the first `SHOWN` in full); ``.problems`` holds all."""
        if len(self.items) == 1:
            where, message = self.items[0]
            text = f"{where} in {self.source}: {message}" if where else f"{self.source}: {message}"
        else:
            shown = [f"  {line}" for line in self.lines()[:SHOWN]]
            if len(self.items) > SHOWN:
                shown.append(f"  ... and {len(self.items) - SHOWN} more")
            text = "\n".join([f"{self.source}: {len(self.items)} problems", *shown])
        err = DemoFileError(text)
        err.problems = self.lines()
        return err

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


def check_fields(problems: Problems, where: str, fields: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> int | None:
    """Check the shapes and dtypes of one episode's per-step fields; return its length T, or None
    when its actions are unusable.

    Args:
        problems: where each problem found is added, naming ``where`` and the key.
        where: the episode, e.g. ``"demo_7"``.
        fields: field name (``"actions"``, ``"obs/state"``, ``"rewards"``, ...) -> (shape, dtype).

    Problems: a non-numeric dtype, a scalar, actions that are not (T, A) or have
    width 0, an empty episode, an observation with no values per step, an image-shaped observation
    that is not an image (see `image_problem`), a field whose row count differs from ``actions``,
    rewards or dones that are not (T,) or (T, 1).
    """
    usable = {}
    for key, (shape, dtype) in fields.items():
        dtype = np.dtype(dtype)
        image = image_problem(tuple(shape[1:]), dtype) if key.startswith(("obs/", "next_obs/")) else None
        if dtype.kind not in NUMERIC_KINDS:
            problems.add(where, f"{key} has non-numeric dtype {dtype} (expected numbers)")
        elif len(shape) == 0:
            problems.add(where, f"{key} is a scalar; expected one row per step")
        elif key.startswith(("obs/", "next_obs/")) and 0 in shape[1:]:
            problems.add(where, f"{key} has per-step shape {tuple(shape[1:])}: no values")
        elif image is not None:
            problems.add(where, f"{key} {image}")
        else:
            usable[key] = tuple(shape)
    if "actions" not in usable:  # missing (the caller reports that), or reported above
        return None
    a_shape = usable["actions"]
    if len(a_shape) != 2:
        problems.add(where, f"actions has shape {a_shape}; expected (T, action_dim)")
        return None
    n = a_shape[0]
    if a_shape[1] == 0:
        problems.add(where, f"actions has width 0 (shape {a_shape}); expected (T, action_dim) with action_dim >= 1")
    if n == 0:
        problems.add(where, "the demo is empty (actions has 0 rows)")
        return None
    for key, shape in usable.items():
        if shape[0] != n:
            problems.add(where, f"actions has {n} rows but {key} has {shape[0]}")
        elif key in ("rewards", "dones") and not (len(shape) == 1 or shape[1:] == (1,)):
            problems.add(where, f"{key} has shape {shape}; expected ({n},)")
    return n


def check_finite(problems: Problems, where: str, key: str, values: np.ndarray) -> None:
    """Add a problem naming the first row of ``values`` (T, ...) that holds NaN or inf."""
    if values.dtype.kind != "f" or values.ndim == 0 or not len(values):
        return
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        problems.add(where, f"{key} holds NaN or inf at step {int(np.argmin(finite))}")


def promoted_dtype(dtypes) -> np.dtype:
    """The dtype that holds every one of ``dtypes`` (a key stored differently in different demos), in
    native byte order: NumPy's promotion (int64 and float32 -> float64, int16 and uint16 -> int32),
    which never narrows a type. Integers beyond a float's mantissa can still change value; readers
    check that with `check_exact`."""
    return np.result_type(*(np.dtype(d).newbyteorder("=") for d in dtypes))


def check_exact(problems: Problems, where: str, key: str, values: np.ndarray, dtype: np.dtype) -> None:
    """Add a problem when converting integer ``values`` to the float ``dtype`` would change any of them."""
    if values.dtype.kind in "iu" and np.dtype(dtype).kind == "f":
        converted = values.astype(dtype)
        if not np.array_equal(converted.astype(values.dtype), values):
            problems.add(where, f"{key} holds {values.dtype} values that {np.dtype(dtype)} (the dtype that holds every "
                                f"demo's {key}) cannot hold exactly; store {key} with one dtype in every demo")


def is_image(step_shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether an observation key holds camera images: (H, W, C) with C in {1, 3}, uint8 (channel last,
    robomimic's convention). Such keys stay uint8 from file to batch."""
    return len(step_shape) == 3 and step_shape[-1] in (1, 3) and np.dtype(dtype) == np.uint8


def image_problem(step_shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """Why an image-shaped observation (per-step shape (H, W, C), uint8 or C <= 4) is not a usable
    image, as the end of a sentence that starts with its key; None for images and for every other
    shape (low-dimensional keys, 3-D arrays whose last axis is longer than 4 and not uint8).

    Refused: uint8 with C not in {1, 3} (channel-first (C, H, W) is named as such); a float or
    integer (H, W, 1) (depth, not supported yet); any other dtype with C = 3 (images are uint8
    0..255); C in {2, 4} of any dtype.
    """
    dtype = np.dtype(dtype)
    if len(step_shape) != 3 or dtype.kind not in NUMERIC_KINDS or is_image(step_shape, dtype):
        return None
    c = step_shape[-1]
    if dtype != np.uint8 and c > 4:
        return None
    hwc = f"per-step shape {tuple(step_shape)}"
    if dtype == np.uint8 or c in (2, 4):
        hint = (f"; it looks channel-first: store images channel-last (H, W, C) = "
                f"{(*step_shape[1:], step_shape[0])}" if step_shape[0] in (1, 3) and c not in (1, 3) else "")
        return f"has {hwc} {dtype}: an image needs 1 or 3 channels (H, W, C), got C={c}{hint}"
    if c == 1:
        return (f"has {hwc} {dtype}: depth (or other non-uint8 single-channel) images are not supported yet; "
                f"image keys are uint8 (H, W, 1) or (H, W, 3)")
    return f"has {hwc} {dtype}: image keys must be uint8 (0..255), (H, W, 1) or (H, W, 3)"
