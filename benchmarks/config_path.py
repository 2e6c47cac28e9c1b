"""The path a reader follows from `imitate.train.train` to the head's loss, measured.

A tracer records every call of a function in ``imitate/`` or ``policy_heads/`` from the start of
`train` to the first call of the head's ``loss``, the first time each (file, function) is called, in
call order: the places a newcomer reads to follow the training settings to the loss. Consecutive
places in one file are one visit; a visit to a file left before is a return (the data layer,
``imitate/data/``, is left out of the count, as a reader expects to go there and back).

With ``--holding``, only calls whose frame holds the settings are recorded: the run's
`TrainConfig` (as a local, or as the ``cfg`` of a local such as the run), or the policy's
description (a `imitate.spec.PolicySpec`, or the spec dict of imitate-run/1 code): the path of the
settings themselves rather than of every helper.

    python benchmarks/config_path.py [--holding]     # prints the path and a JSON summary
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def trace_config_path(steps: int = 4, holding: bool = False) -> list[tuple[str, str]]:
    from imitate.collect import collect
    from imitate.train import TrainConfig, train

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "fp.hdf5"
    collect("imitate/ForkedPath-v0", 4, data, seed=0, progress=False)
    cfg = TrainConfig(data=str(data), out=str(tmp / "run"), head="gmm", steps=steps, batch_size=8, log_every=2,
                      val_every=2, eval_episodes=0, ckpt_every=steps, action_horizon=4, n_act=2)
    import policy_heads
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (imported before tracing: only imitate is traced)

    getattr(policy_heads, "load_heads", lambda: None)()
    seen: list[tuple[str, str]] = []
    done = [False]
    roots = (str(ROOT / "imitate"), str(ROOT / "policy_heads"))

    def holds_settings(frame) -> bool:
        for v in frame.f_locals.values():
            if v is cfg or getattr(v, "cfg", None) is cfg or type(v).__name__ == "PolicySpec" or (
                    isinstance(v, dict) and "head_config" in v and "obs_keys" in v):
                return True
        return False

    def tracer(frame, event, arg):
        if event != "call" or done[0]:
            return
        path = frame.f_code.co_filename
        if (path.startswith(roots) and not frame.f_code.co_name.startswith("<")   # no comprehensions, lambdas
                and (not holding or holds_settings(frame) or frame.f_code.co_name == "loss")):
            where = (str(Path(path).relative_to(ROOT)), frame.f_code.co_name)
            if where not in seen:
                seen.append(where)
            if where[0].startswith("policy_heads/") and where[1] == "loss":
                done[0] = True

    sys.setprofile(tracer)
    try:
        train(cfg, {"hidden_dims": "16", "num_modes": "2"}, {"hidden_dims": "16", "feature_dim": "8"}, progress=False)
    finally:
        sys.setprofile(None)
    return seen


def summarize(path: list[tuple[str, str]]) -> dict:
    visits: list[str] = []
    for file, _ in path:
        if not visits or visits[-1] != file:
            visits.append(file)
    returns = [f for i, f in enumerate(visits) if f in visits[:i] and not f.startswith("imitate/data/")]
    return {"places": len(path), "files": len({f for f, _ in path}), "visits": visits, "returns": len(returns)}


def main() -> None:
    path = trace_config_path(holding="--holding" in sys.argv)
    for file, function in path:
        print(f"{file}:{function}")
    print(json.dumps(summarize(path)))


if __name__ == "__main__":
    main()
