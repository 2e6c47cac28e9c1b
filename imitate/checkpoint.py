"""Run directories: what a training run writes and how a policy is loaded back, without pickle.

    RUN_DIR/
      config.json               format "imitate-run/2": policy (`imitate.spec.PolicySpec.to_json`), the
                                algorithm's settings (train, or algo + ppo ...), data, versions
      model.safetensors         EMA weights + normalizer statistics: what `load_policy` loads
      train_state.safetensors   raw weights, EMA weights, optimizer tensors, RNG state; its metadata
                                holds the step, the sampler's position and the optimizer's settings
      metrics.jsonl, tb/        logs (one JSON object per log line; TensorBoard scalars)

Every file is written under a temporary name and moved into place, so a killed run never leaves a
half-written file; the training state lives in one file, so a resumed run never mixes two steps.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from imitate.errors import ImitateError

RUN_FORMAT = "imitate-run/2"
#: Formats `read_run_config` opens: version 1 described the policy with obs_keys/obs_shapes/normalizer.
RUN_FORMATS = ("imitate-run/1", RUN_FORMAT)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the ``.NAME.*.tmp`` files that a killed `atomic_write` left in ``directory``; return their names."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp.name)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it onto ``path``.

    The file gets the mode of any new file (0666 less the umask: 0644 under umask 022), not the
    private 0600 of mkstemp or of writers that make their own file (safetensors)."""
    path = Path(path)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the kernel applies the umask
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


def versions() -> dict[str, str]:
    import imitate

    return {"imitate": imitate.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _contiguous(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_weights(path: str | os.PathLike, module: torch.nn.Module, metadata: dict[str, Any] | None = None) -> None:
    """A module's state dict as safetensors, atomically; non-finite weights are refused."""
    state = _contiguous(module.state_dict())
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ImitateError(f"refusing to write {path}: non-finite values in {bad[:5]}")
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def save_train_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Tensors plus a JSON-able state in one safetensors file, atomically."""
    atomic_write(path, lambda tmp: save_file(_contiguous(tensors), tmp, metadata={"state": json.dumps(state)}))


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads(f.metadata()["state"])
        return load_file(str(path)), state
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ImitateError(f"{path}: not a readable training state ({e})") from None


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON (settings, scalars)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in sd["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def read_run_config(run_dir: str | os.PathLike, resuming: bool = False) -> dict[str, Any]:
    """The config.json of a run directory, checked: its ``policy`` section is returned in the layout of
    `PolicySpec.to_json` (also for ``imitate-run/1`` directories), ``data`` is an object, and with
    ``resuming`` the ``train`` section must be there. Errors name the file and the field."""
    from imitate.formats import read_tagged_json
    from imitate.spec import PolicySpec

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ImitateError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise ImitateError(f"{run_dir}: is a file, not a run directory")
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise ImitateError(f"{run_dir}: not an imitate run directory (no config.json)")
    config = read_tagged_json(cfg_path, RUN_FORMATS, "an imitate run config")
    if "policy" not in config:
        raise ImitateError(f"{cfg_path}: no 'policy' section (the description of the trained policy)")
    config["policy"] = PolicySpec.from_json(config["policy"], f"{cfg_path}: policy").to_json()
    if not isinstance(config.get("data", {}), dict):
        raise ImitateError(f"{cfg_path}: 'data' must be an object")
    if resuming and not isinstance(config.get("train"), dict):
        raise ImitateError(f"{cfg_path}: no 'train' section: this run was not written by imitate train, so it "
                           f"cannot be resumed by it")
    return config


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str, head: str) -> None:
    """load_state_dict with an error that says what does not match, in the user's words. A submodule
    with ``upgrade_state_dict(state, prefix)`` first fills in what older checkpoints lack."""
    for name, sub in module.named_modules():
        if hasattr(sub, "upgrade_state_dict"):
            state = sub.upgrade_state_dict(state, f"{name}." if name else "")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    dtypes = [f"{k}: file {state[k].dtype} vs model {own[k].dtype}" for k in own
              if k in state and state[k].dtype != own[k].dtype]
    if missing or unexpected or shapes or dtypes:
        raise ImitateError(f"{where} does not match the {head!r} policy described by config.json: "
                           f"missing {missing[:4]}, unexpected {unexpected[:4]}, shape mismatches {shapes[:4]}, "
                           f"dtype mismatches {dtypes[:4]}")
    module.load_state_dict(state)


def load_policy(run_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """The trained policy of a run directory (EMA weights), in eval mode, on ``device``.

    Reads only JSON and safetensors: nothing is unpickled.
    """
    from imitate.policy import Policy
    from imitate.spec import PolicySpec

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise ImitateError(f"{run_dir}: no model.safetensors yet (the run has not written a checkpoint)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ImitateError(f"{weights}: not a readable safetensors file ({e})") from None
    policy = Policy(PolicySpec.from_json(config["policy"]))
    load_state_into(policy, state, str(weights), config["policy"]["head"])
    return policy.to(device).eval()
