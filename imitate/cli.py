"""The ``imitate`` command. Each sub-command parses its flags, calls one library function, prints.

    imitate collect TASK --episodes N --out FILE [--seed S] [--overwrite]
    imitate data info FILE [--json]
    imitate demo [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imitate.errors import ImitateError

DEFAULT_TASK = "imitate/ForkedPath-v0"
SHIPPED_DATASET = Path(__file__).resolve().parent.parent / "datasets" / "forked_path.hdf5"
#: The demonstrations shipped in datasets/ are exactly `imitate collect` with these arguments.
SHIPPED_COLLECT = {"task": DEFAULT_TASK, "episodes": 200, "seed": 0}


def _key_values(pairs: list[str], flag: str) -> dict:
    """``key=value`` pairs; values are read as JSON where they parse (numbers, true, lists), else strings."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ImitateError(f"{flag} expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_collect(args) -> int:
    from imitate.collect import collect

    res = collect(args.task, args.episodes, args.out, seed=args.seed, overwrite=args.overwrite,
                  env_kwargs=_key_values(args.env_kw, "--env-kw") or None,
                  expert_kwargs=_key_values(args.expert_kw, "--expert-kw") or None,
                  valid_fraction=args.valid_fraction, progress=not args.quiet)
    print(json.dumps({"file": res.path, "episodes": res.episodes, "transitions": res.transitions,
                      "success_rate": res.success_rate, "mean_return": round(res.mean_return, 4),
                      "mode_shares": res.mode_shares}))
    return 0


def _cmd_data_info(args) -> int:
    from imitate.data.info import demo_file_info, format_info

    info = demo_file_info(args.file)
    print(json.dumps(info) if args.json else format_info(info))
    return 0


def _cmd_demo(args) -> int:
    from imitate.collect import collect
    from imitate.data.info import demo_file_info, format_info

    out = Path(args.out) / "forked_path.hdf5"
    print(f"collecting {SHIPPED_COLLECT['episodes']} expert demonstrations of {DEFAULT_TASK} -> {out}")
    res = collect(SHIPPED_COLLECT["task"], SHIPPED_COLLECT["episodes"], out, seed=SHIPPED_COLLECT["seed"],
                  overwrite=True)
    print(f"expert success rate {res.success_rate:.3f}, mean return {res.mean_return:.2f}, routes {res.mode_shares}")
    info = demo_file_info(out)
    print(format_info(info))
    if SHIPPED_DATASET.exists():
        same = demo_file_info(SHIPPED_DATASET)["content_sha256"] == info["content_sha256"]
        print(f"shipped dataset {SHIPPED_DATASET.name}: "
              + ("identical content (regenerated exactly)" if same else "DIFFERENT content"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imitate", description="Imitation learning with expressive policies.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="run a task's scripted expert and write demonstrations")
    p.add_argument("task", help="task id, e.g. imitate/ForkedPath-v0 or Pendulum-v1")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--out", required=True, help="output HDF5 file (robomimic layout)")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed+i")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument")
    p.add_argument("--expert-kw", action="append", metavar="KEY=VALUE", help="expert keyword argument, e.g. p_left=0.7")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of demos in the 'valid' filter key")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("data", help="inspect demonstration files")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data_sub.add_parser("info", help="validate a file fully and print its summary (exit 1 if invalid)")
    q.add_argument("file")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_cmd_data_info)

    p = sub.add_parser("demo", help="the main job on the embedded default (ForkedPath demonstrations)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImitateError as e:
        print(f"imitate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imitate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
