"""The ``imitate`` command. Each sub-command parses its flags, calls one library function, prints.

    imitate collect TASK --episodes N --out FILE [--seed S] [--overwrite] [--mix expert:0.2,noisy:0.5,random:0.3]
    imitate data info PATH [--format auto|robomimic|lerobot|zarr|minari] [--json]
    imitate data convert SRC DST [--format-out robomimic|lerobot] [--format ...] [--overwrite]
    imitate train --data FILE --head NAME --out RUN_DIR [--steps N] [--set key=value ...] [--resume]
    imitate eval RUN_DIR [--episodes N] [--video PATH] [--seed S] [--env ENV_ID]
    imitate compare --data FILE --out DIR [--heads all|a,b,...] [--steps N] [--seeds K] [--episodes E]
                    [--jobs J] [--set head.key=value ...]
    imitate dagger --task TASK --head NAME --rounds R --out DIR [--gate none|scripted|human] ...
    imitate teleop TASK --out FILE [--seed S] [--env-kw key=value ...]
    imitate export RUN_DIR --format onnx|torch [--format ...] --out DIR [--overwrite]
    imitate gail|airl --data FILE --head NAME --out DIR [--env ENV_ID] [--steps N] [--init RUN_DIR] [--seed S]
    imitate rl --env ENV_ID --out DIR [--reward AIRL_RUN_DIR] [--head NAME] [--steps N] [--seed S]
    imitate rl --init BC_RUN --out DIR [--demos FILE --demo-coef C --demo-decay D]
               [--start-states FILE --curriculum reverse|uniform] [--env-kw reward=sparse]
    imitate irl --task imitate/GridWorld-v0 [--demos N] [--out DIR]
    imitate offline --algo iql|awac|cql --data FILE --head NAME --out RUN_DIR [--steps N] [--online-steps N]
                    [--set algo.KEY=VALUE] [--set head.KEY=VALUE] [--resume]
    imitate demo [--out DIR] [--jobs J]
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from imitate.cli_parser import DEFAULT_TASK, build_parser
from imitate.errors import ImitateError

SHIPPED_DATASET = Path(__file__).resolve().parent.parent / "datasets" / "forked_path.hdf5"
#: The demonstrations shipped in datasets/ are exactly `imitate collect` with these arguments.
SHIPPED_COLLECT = {"task": DEFAULT_TASK, "episodes": 200, "seed": 0}
#: The main job's budget: every head on the shipped demonstrations, 2 seeds; 3 min 40 s from a fresh clone on the
#: 2-core CPU machine, installation included (README).
DEMO_COMPARE = {"heads": "all", "steps": 2000, "seeds": 2, "episodes": 50}


def _cmd_collect(args) -> int:
    from imitate.collect import collect
    from imitate.config import parse_key_values

    res = collect(args.task, args.episodes, args.out, seed=args.seed, overwrite=args.overwrite,
                  env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True) or None,
                  expert_kwargs=parse_key_values(args.expert_kw, "--expert-kw", as_json=True) or None,
                  valid_fraction=args.valid_fraction, progress=not args.quiet, mix=args.mix,
                  noisy_std=args.noisy_std, image_compression=args.image_compression)
    summary = {"file": res.path, "episodes": res.episodes, "transitions": res.transitions,
               "success_rate": res.success_rate, "mean_return": round(res.mean_return, 4),
               "mode_shares": res.mode_shares}
    if res.quality_counts is not None:
        summary["quality_counts"] = res.quality_counts
    print(json.dumps(summary))
    return 0


def _cmd_data_info(args) -> int:
    if args.data_command == "convert":
        return _cmd_data_convert(args)
    from imitate.data.info import demo_file_info, format_info

    info = demo_file_info(args.file, format=args.data_format)
    print(json.dumps(info) if args.json else format_info(info))
    return 0


def _cmd_data_convert(args) -> int:
    from imitate.data.hdf5 import image_compression_filter
    from imitate.data.sources import convert_dataset

    image_compression_filter(args.image_compression)  # an unknown name is refused before anything is read
    keys = [k.strip() for k in args.obs_keys.split(",") if k.strip()] or None
    print(json.dumps(convert_dataset(args.src, args.dst, args.format_out, format=args.data_format, obs_keys=keys,
                                     overwrite=args.overwrite, image_compression=args.image_compression,
                                     fps=args.fps, video_codec=args.video_codec, progress=not args.quiet)))
    return 0


def _given(args, cls: type) -> dict:
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def _cmd_train(args) -> int:
    from imitate.config import apply_overrides, split_sets
    from imitate.settings import TrainConfig, train_config_from_file
    from imitate.train import resume, train

    given = _given(args, TrainConfig)
    sets = split_sets(args.set, ("head", "encoder"))
    if args.resume:
        if "out" not in given:
            raise ImitateError("--resume needs --out RUN_DIR")
        extra = sorted(set(given) - {"out", "steps"}) + sorted(f"--set {k}" for o in sets.values() for k in o)
        if extra or args.config:
            raise ImitateError(f"--resume continues a run with its own settings; only --steps may change "
                               f"(got {extra or ['--config']})")
        result = resume(given["out"], steps=int(given["steps"]) if "steps" in given else None, progress=not args.quiet)
    else:
        base, head, encoder = (train_config_from_file(args.config) if args.config else (TrainConfig(), {}, {}))
        cfg = apply_overrides(base, given, "imitate train")
        result = train(cfg, head_config={**head, **sets["head"]}, encoder_config={**encoder, **sets["encoder"]},
                       progress=not args.quiet)
    if not _rank():  # under torchrun rank 0 alone reports
        print(json.dumps(result))
    return 0


def _cmd_eval(args) -> int:
    from imitate.checkpoint import load_policy, read_run_config
    from imitate.envs import task_of
    from imitate.evaluate import evaluate

    config = read_run_config(args.run_dir)
    env_id, env_kwargs = task_of(config["data"].get("env_args"), args.env)
    if not env_id:
        raise ImitateError(f"{args.run_dir}: its data names no environment imitate can build; pass --env ENV_ID")
    policy = load_policy(args.run_dir)
    res = evaluate(policy, env_id, env_kwargs, args.episodes, args.seed, video=args.video,
                   deterministic=args.deterministic, progress=not args.quiet)
    summary = {k: v for k, v in res.items() if k not in ("returns", "successes", "modes")}
    if args.video:
        summary["video"] = args.video
    print(json.dumps(summary))
    return 0


def _print_record(record: dict) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)


def _cmd_adversarial(args) -> int:
    from imitate.config import apply_overrides, split_sets
    from imitate.settings import AdversarialConfig

    cfg = apply_overrides(AdversarialConfig(), _given(args, AdversarialConfig), f"imitate {args.command}")
    sets = split_sets(args.set, ("head", "ppo"))
    if args.command == "gail":
        from imitate.algos.gail import train_gail as run
    else:
        from imitate.algos.airl import train_airl as run
    _print_record({"final": run(cfg, sets["ppo"], sets["head"], progress=not args.quiet, on_log=_print_record)})
    return 0


def _cmd_rl(args) -> int:
    from imitate.algos.rl_loop import train_rl
    from imitate.config import apply_overrides, parse_key_values, split_sets
    from imitate.settings import RLDemoConfig

    sets = split_sets(args.set, ("head", "ppo"))
    demo = apply_overrides(RLDemoConfig(), _given(args, RLDemoConfig), "imitate rl")
    _print_record({"final": train_rl(args.env, args.out, args.head, args.steps, args.reward, args.seed, sets["ppo"],
                                     sets["head"], args.expert_return, progress=not args.quiet, on_log=_print_record,
                                     reward_entropy=args.reward_entropy,
                                     env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True) or None,
                                     demo=demo, eval_episodes=args.eval_episodes, log_every=args.log_every)})
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
    from imitate.compare import PER_RUN, CompareConfig, compare
    from imitate.config import parse_key_values
    from imitate.settings import TrainConfig

    given = {**{k: v for k, v in _given(args, TrainConfig).items() if k not in PER_RUN},
             **_given(args, CompareConfig)}
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


def _cmd_dagger(args) -> int:
    from imitate.algos.dagger import PER_ROUND, DaggerConfig, dagger, dagger_config
    from imitate.config import parse_key_values, split_sets
    from imitate.settings import TrainConfig

    sets = split_sets(args.set, ("head", "encoder"))
    train = {k: v for k, v in _given(args, TrainConfig).items() if k not in PER_ROUND}
    cfg = dagger_config(**train, **_given(args, DaggerConfig),
                        env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True),
                        expert_kwargs=parse_key_values(args.expert_kw, "--expert-kw", as_json=True),
                        demo_env_kwargs=parse_key_values(args.demo_env_kw, "--demo-env-kw", as_json=True),
                        head_config={**sets["head"], **{f"encoder.{k}": v for k, v in sets["encoder"].items()}})
    dagger(cfg, progress=not args.quiet, on_round=lambda r: print(json.dumps(r), flush=True))
    return 0


def _cmd_teleop(args) -> int:
    from imitate.config import parse_key_values
    from imitate.teleop import record

    res = record(args.task, args.out, env_kwargs=parse_key_values(args.env_kw, "--env-kw", as_json=True) or None,
                 seed=args.seed, fps=args.fps, overwrite=args.overwrite)
    print(json.dumps(res))
    return 0


def _cmd_offline(args) -> int:
    from imitate.config import apply_overrides, split_sets
    from imitate.settings import OfflineConfig

    given = _given(args, OfflineConfig)
    sets = split_sets(args.set, ("algo", "head", "encoder"))
    if args.resume:
        from imitate.algos.offline import resume_offline

        if "out" not in given:
            raise ImitateError("--resume needs --out RUN_DIR")
        extra = sorted(set(given) - {"out", "steps"}) + sorted(f"--set {o}.{k}" for o, kv in sets.items() for k in kv)
        if extra:
            raise ImitateError(f"--resume continues a run with its own settings; only --steps may change (got {extra})")
        result = resume_offline(given["out"], steps=int(given["steps"]) if "steps" in given else None,
                                progress=not args.quiet)
    else:
        from imitate.algos.offline import train_offline

        cfg = apply_overrides(OfflineConfig(), given, "imitate offline")
        result = train_offline(cfg, sets["algo"], sets["head"], sets["encoder"], progress=not args.quiet)
    print(json.dumps(result))
    return 0


COMMANDS = {"collect": _cmd_collect, "data": _cmd_data_info, "train": _cmd_train, "eval": _cmd_eval,
            "dagger": _cmd_dagger, "teleop": _cmd_teleop, "export": _cmd_export, "gail": _cmd_adversarial,
            "airl": _cmd_adversarial, "rl": _cmd_rl, "irl": _cmd_irl, "compare": _cmd_compare, "demo": _cmd_demo,
            "offline": _cmd_offline}


def _rank() -> int | None:
    """This process's rank when torchrun started several (None for one process)."""
    return int(os.environ.get("RANK") or 0) if os.environ.get("WORLD_SIZE", "1") not in ("", "1") else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ImitateError as e:
        where = "" if _rank() is None or str(e).startswith("rank ") else f" (rank {_rank()})"
        print(f"imitate: error{where}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imitate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
