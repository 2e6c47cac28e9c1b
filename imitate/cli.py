"""The ``imitate`` command. Each sub-command parses its flags, calls one library function, prints.

    imitate collect TASK --episodes N --out FILE [--seed S] [--overwrite]
    imitate data info FILE [--json]
    imitate train --data FILE --head NAME --out RUN_DIR [--steps N] [--set key=value ...] [--resume]
    imitate eval RUN_DIR [--episodes N] [--video PATH] [--seed S] [--env ENV_ID]
    imitate compare --data FILE --out DIR [--heads all|a,b,...] [--steps N] [--seeds K] [--episodes E]
                    [--jobs J] [--set head.key=value ...]
    imitate dagger --task TASK --head NAME --rounds R --out DIR [--gate none|scripted|human] ...
    imitate teleop TASK --out FILE [--seed S] [--env-kw key=value ...]
    imitate export RUN_DIR --format onnx|torch [--format ...] --out DIR [--overwrite]
    imitate gail|airl --data FILE --head NAME --out DIR [--env ENV_ID] [--steps N] [--init RUN_DIR] [--seed S]
    imitate rl --env ENV_ID --out DIR [--reward AIRL_RUN_DIR] [--head NAME] [--steps N] [--seed S]
    imitate irl --task imitate/GridWorld-v0 [--demos N] [--out DIR]
    imitate demo [--out DIR] [--jobs J]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imitate.errors import ImitateError

DEFAULT_TASK = "imitate/ForkedPath-v0"
SHIPPED_DATASET = Path(__file__).resolve().parent.parent / "datasets" / "forked_path.hdf5"
#: The demonstrations shipped in datasets/ are exactly `imitate collect` with these arguments.
SHIPPED_COLLECT = {"task": DEFAULT_TASK, "episodes": 200, "seed": 0}
#: The main job's budget: every head on the shipped demonstrations, 2 seeds; about 3.5 minutes on an idle
#: 2-core CPU machine, 4.5 from a fresh clone with the installation (BENCHMARKS.md).
DEMO_COMPARE = {"heads": "all", "steps": 2000, "seeds": 2, "episodes": 50}


def _cmd_collect(args) -> int:
    from imitate.collect import collect
    from imitate.config import parse_key_values

    res = collect(args.task, args.episodes, args.out, seed=args.seed, overwrite=args.overwrite,
                  env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True) or None,
                  expert_kwargs=parse_key_values(args.expert_kw, "--expert-kw", as_json=True) or None,
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


def _train_help() -> str:
    from imitate.config import describe
    from imitate.encoders import EncoderConfig
    from policy_heads import available_heads, get_head_class

    parts = ["head settings (--set key=value, or --set head.key=value):"]
    for name in available_heads():
        parts.append(f" {name}:\n" + describe(get_head_class(name).Config, indent="   "))
    parts.append("encoder settings (--set encoder.key=value):\n" + describe(EncoderConfig, indent="   "))
    return "\n".join(parts)


def _add_config_flags(p: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of the flat config dataclass ``cls``, its docstring as help; unset flags are
    absent from the parsed namespace (the dataclass keeps its default)."""
    import dataclasses
    import typing

    from imitate.config import field_docs

    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        metavar = {int: "N", float: "X", str: "VALUE", bool: "true|false"}.get(kind, "A,B,...")
        p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=metavar,
                       help=f"{docs[f.name]} (default: {f.default!r})")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from imitate.train import TrainConfig

    _add_config_flags(p, TrainConfig)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a head setting (key=value or head.key=value) or encoder.key=value; see below")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_train(args) -> int:
    import dataclasses

    from imitate.config import apply_overrides, parse_key_values
    from imitate.train import TrainConfig, resume, train

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    sets = parse_key_values(args.set)
    if args.resume:
        if "out" not in given:
            raise ImitateError("--resume needs --out RUN_DIR")
        extra = sorted(set(given) - {"out", "steps"}) + sorted(sets)
        if extra:
            raise ImitateError(f"--resume continues a run with its own settings; only --steps may change (got {extra})")
        steps = int(given["steps"]) if "steps" in given else None
        result = resume(given["out"], steps=steps, progress=not args.quiet)
    else:
        cfg = apply_overrides(TrainConfig(), given, "imitate train")
        head = {k.removeprefix("head."): v for k, v in sets.items() if not k.startswith("encoder.")}
        encoder = {k.removeprefix("encoder."): v for k, v in sets.items() if k.startswith("encoder.")}
        result = train(cfg, head_config=head, encoder_config=encoder, progress=not args.quiet)
    if not _rank():  # under torchrun rank 0 alone reports
        print(json.dumps(result))
    return 0


def _cmd_eval(args) -> int:
    from imitate.checkpoint import load_policy, read_run_config
    from imitate.evaluate import evaluate

    config = read_run_config(args.run_dir)
    env_args = config["data"].get("env_args") or {}
    env_id = args.env or (env_args.get("env_name") if env_args.get("type") == 2 else None)
    if not env_id:
        raise ImitateError(f"{args.run_dir}: its data names no gymnasium environment; pass --env ENV_ID")
    env_kwargs = env_args.get("env_kwargs") if env_id == env_args.get("env_name") else None
    policy = load_policy(args.run_dir)
    res = evaluate(policy, env_id, env_kwargs, args.episodes, args.seed, video=args.video,
                   deterministic=args.deterministic, progress=not args.quiet)
    summary = {k: v for k, v in res.items() if k not in ("returns", "successes", "modes")}
    if args.video:
        summary["video"] = args.video
    print(json.dumps(summary))
    return 0


def _given(args, cls: type) -> dict:
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def _print_record(record: dict) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)


def _split_sets(pairs: list[str] | None) -> tuple[dict, dict]:
    """``--set ppo.key=value`` and ``--set head.key=value`` (or ``key=value`` for the head)."""
    from imitate.config import parse_key_values

    sets = parse_key_values(pairs)
    ppo = {k.removeprefix("ppo."): v for k, v in sets.items() if k.startswith("ppo.")}
    head = {k.removeprefix("head."): v for k, v in sets.items() if not k.startswith("ppo.")}
    return ppo, head


def _cmd_adversarial(args) -> int:
    from imitate.algos.rewards import AdversarialConfig
    from imitate.config import apply_overrides

    cfg = apply_overrides(AdversarialConfig(), _given(args, AdversarialConfig), f"imitate {args.command}")
    ppo, head = _split_sets(args.set)
    if args.command == "gail":
        from imitate.algos.gail import train_gail as run
    else:
        from imitate.algos.airl import train_airl as run
    _print_record({"final": run(cfg, ppo, head, progress=not args.quiet, on_log=_print_record)})
    return 0


def _cmd_rl(args) -> int:
    from imitate.algos.runs import train_rl

    ppo, head = _split_sets(args.set)
    _print_record({"final": train_rl(args.env, args.out, args.head, args.steps, args.reward, args.seed, ppo, head,
                                     args.expert_return, progress=not args.quiet, on_log=_print_record,
                                     reward_entropy=args.reward_entropy)})
    return 0


def _cmd_irl(args) -> int:
    from imitate.algos.maxent_irl import IRLConfig, run_maxent_irl
    from imitate.config import apply_overrides

    cfg = apply_overrides(IRLConfig(), _given(args, IRLConfig), "imitate irl")
    _print_record({"final": run_maxent_irl(cfg, on_log=_print_record)})
    return 0


def _cmd_export(args) -> int:
    from imitate.export.exporter import export_run

    log = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    meta = export_run(args.run_dir, args.out, args.formats or ["onnx"], overwrite=args.overwrite, log=log)
    print(json.dumps({"out": args.out, "models": meta["models"], "head": meta["head"],
                      "inputs": [i["name"] for i in meta["inputs"]], "output": meta["output"]["name"]}))
    return 0


def _cmd_compare(args) -> int:
    import dataclasses

    from imitate.compare import CompareConfig, compare
    from imitate.config import parse_key_values

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(CompareConfig) if hasattr(args, f.name)}
    if "data" not in given or "out" not in given:
        raise ImitateError("imitate compare needs --data FILE and --out DIR")
    compare(settings=parse_key_values(args.set), progress=not args.quiet, **given)
    return 0


def _cmd_demo(args) -> int:
    from imitate.compare import compare

    if not SHIPPED_DATASET.exists():
        raise ImitateError(f"{SHIPPED_DATASET} is missing; regenerate it with: imitate collect {DEFAULT_TASK} "
                           f"--episodes {SHIPPED_COLLECT['episodes']} --seed {SHIPPED_COLLECT['seed']} "
                           f"--out {SHIPPED_DATASET}")
    print(f"main job: every policy head on the shipped {DEFAULT_TASK} demonstrations, the same budget "
          f"({DEMO_COMPARE['steps']} steps, {DEMO_COMPARE['seeds']} seed(s), {DEMO_COMPARE['episodes']} rollouts each)")
    options = {**DEMO_COMPARE, **({"jobs": args.jobs} if args.jobs else {})}
    compare(str(SHIPPED_DATASET), args.out, **options)
    return 0


def _add_dagger_flags(p: argparse.ArgumentParser) -> None:
    import dataclasses
    import typing

    from imitate.algos.dagger import DaggerConfig
    from imitate.config import field_docs

    docs, hints = field_docs(DaggerConfig), typing.get_type_hints(DaggerConfig)
    for f in dataclasses.fields(DaggerConfig):
        if hints[f.name] is dict:
            continue
        metavar = {int: "N", float: "X", str: "VALUE"}.get(hints[f.name], "VALUE")
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=argparse.SUPPRESS, metavar=metavar,
                       help=f"{docs[f.name]} (default: {f.default!r})")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument, e.g. gap_width=0.2")
    p.add_argument("--expert-kw", action="append", metavar="KEY=VALUE", help="expert keyword argument, e.g. p_left=1")
    p.add_argument("--demo-env-kw", action="append", metavar="KEY=VALUE",
                   help="environment keyword argument for the initial demos only, e.g. action_noise=0")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a head setting (key=value) or encoder.key=value for round 0")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_dagger(args) -> int:
    import dataclasses

    from imitate.algos.dagger import DaggerConfig, dagger
    from imitate.config import apply_overrides, parse_key_values

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DaggerConfig) if hasattr(args, f.name)}
    cfg = apply_overrides(DaggerConfig(), given, "imitate dagger")
    cfg.env_kwargs = parse_key_values(args.env_kw, "--env-kw", as_json=True)
    cfg.expert_kwargs = parse_key_values(args.expert_kw, "--expert-kw", as_json=True)
    cfg.demo_env_kwargs = parse_key_values(args.demo_env_kw, "--demo-env-kw", as_json=True)
    cfg.head_config = parse_key_values(args.set)
    dagger(cfg, progress=not args.quiet, on_round=lambda r: print(json.dumps(r), flush=True))
    return 0


def _cmd_teleop(args) -> int:
    from imitate.config import parse_key_values
    from imitate.teleop import record

    res = record(args.task, args.out, env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True) or None,
                 seed=args.seed, fps=args.fps, overwrite=args.overwrite)
    print(json.dumps(res))
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser. The train flags (which import torch and the heads) are built only when
    the sub-command is ``train``, so that the other commands start fast."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="imitate", description="Imitation learning with expressive policies.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('imitate').__version__}")
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

    is_train = argv[:1] == ["train"]
    p = sub.add_parser("train", help="train a policy by behaviour cloning", epilog=_train_help() if is_train else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if is_train:
        _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="roll out a trained policy and print a JSON summary")
    p.add_argument("run_dir", help="a run directory written by imitate train")
    p.add_argument("--episodes", type=int, default=20, help="rollouts")
    p.add_argument("--seed", type=int, default=10000, help="episode i is reset with seed+i (default away from collection seeds)")
    p.add_argument("--env", help="environment id (default: the one the training data names)")
    p.add_argument("--video", metavar="PATH", help="record the first episode (.gif, or .mp4 with imageio-ffmpeg)")
    p.add_argument("--deterministic", action="store_true", help="use the head's most likely action where it has one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    is_dagger = argv[:1] == ["dagger"]
    p = sub.add_parser("dagger", help="DAgger / human-gated DAgger: the expert labels the states the policy visits")
    if is_dagger:
        _add_dagger_flags(p)
    p.set_defaults(func=_cmd_dagger)

    p = sub.add_parser("teleop", help="drive a 2-D task by hand in a pygame window and record demonstrations")
    p.add_argument("task", nargs="?", default=DEFAULT_TASK, help=f"task id (default {DEFAULT_TASK})")
    p.add_argument("--out", required=True, help="output HDF5 file (robomimic layout)")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed+k")
    p.add_argument("--fps", type=float, default=10, help="environment steps per second (10 = real time)")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_teleop)

    p = sub.add_parser("export", help="export a trained policy as one graph (ONNX or torch.export) for deployment")
    p.add_argument("run_dir", help="a run directory written by imitate train")
    p.add_argument("--format", dest="formats", action="append", choices=["onnx", "torch"],
                   help="onnx (model.onnx, for onnxruntime) or torch (model.pt2, torch.export); repeat for both "
                        "(default: onnx)")
    p.add_argument("--out", required=True, help="output folder: the model file(s) and export.json")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_export)

    for name, what in (("gail", "GAIL"), ("airl", "AIRL (also saves the recovered reward)")):
        p = sub.add_parser(name, help=f"adversarial imitation by {what} from a demo file, PPO generator")
        if argv[:1] == [name]:
            from imitate.algos.rewards import AdversarialConfig
            _add_config_flags(p, AdversarialConfig)
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="ppo.key=value (PPOConfig) or head.key=value (the generator head's Config)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_adversarial)

    p = sub.add_parser("rl", help="PPO on an environment's reward, or on a reward recovered by AIRL (--reward)")
    p.add_argument("--env", required=True, help="gymnasium environment id")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--reward", help="an AIRL run directory (reward.json + reward.safetensors); default: the env's reward")
    p.add_argument("--reward-entropy", type=float, default=1.0, metavar="X",
                   help="with --reward: train on g(s) - X log pi(a|s), AIRL's maximum-entropy objective (0: g alone)")
    p.add_argument("--head", default="gaussian", help="policy head (Discrete actions: autoregressive)")
    p.add_argument("--steps", type=int, default=200_000, help="environment steps")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, environments and sampling")
    p.add_argument("--expert-return", type=float, help="return that normalized_return counts as 1 "
                   "(default: the demos' mean return recorded with --reward)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help="ppo.key=value or head.key=value")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rl)

    p = sub.add_parser("irl", help="maximum-entropy IRL on a tabular task (imitate/GridWorld-v0)")
    if argv[:1] == ["irl"]:
        from imitate.algos.maxent_irl import IRLConfig
        _add_config_flags(p, IRLConfig)
    p.set_defaults(func=_cmd_irl)

    from imitate.compare import CompareConfig

    p = sub.add_parser("compare", help="train every chosen head on one file with the same budget; report which keep the modes",
                       description="Train every chosen head on one demonstration file with the same budget and "
                                   "seeds, measure success, modes and action distributions, and write "
                                   "OUT/report.html, OUT/report.md and OUT/results.json. Rerunning skips finished runs.")
    _add_config_flags(p, CompareConfig)
    p.add_argument("--set", action="append", metavar="HEAD.KEY=VALUE", default=[],
                   help="a head setting such as gmm.num_modes=3 or diffusion.denoiser=unet, or encoder.KEY=VALUE "
                        "(see imitate train --help for every setting)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="the main job: imitate compare on the shipped ForkedPath demonstrations")
    p.add_argument("--out", default="runs/demo", help="output folder (report.html, report.md, results.json)")
    p.add_argument("--jobs", type=int, default=0, help="runs trained at once (default: one per CPU core, at most 4)")
    p.set_defaults(func=_cmd_demo)
    return parser


def _rank() -> int | None:
    """This process's rank when torchrun started several (None for one process)."""
    return int(os.environ.get("RANK") or 0) if os.environ.get("WORLD_SIZE", "1") not in ("", "1") else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except ImitateError as e:
        where = "" if _rank() is None or str(e).startswith("rank ") else f" (rank {_rank()})"
        print(f"imitate: error{where}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imitate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
