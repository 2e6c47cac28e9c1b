"""The ``imitate`` command's parser: every sub-command and flag, built without importing torch.

Flags come from the settings dataclasses (`imitate.settings`, `imitate.compare.CompareConfig`,
`imitate.algos.dagger.DaggerConfig`, `imitate.algos.maxent_irl.IRLConfig`), one per field with its
docstring as help. The lists of head and PPO settings at the end of some help texts import the heads
(and so torch) only when that help is printed.
"""
from __future__ import annotations

import argparse

DEFAULT_TASK = "imitate/ForkedPath-v0"
#: Settings fields whose flag has a second, shorter spelling.
FLAG_ALIASES = {"data_format": ("--format",)}
#: What ``--format`` accepts where demonstrations are read.
FORMAT_CHOICES = "auto, robomimic, lerobot, zarr, minari"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be a function, called only when the help is printed (the
    settings of the heads it lists need torch; parsing never does)."""

    def __init__(self, *args, epilog_fn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The command's parser: every sub-command and flag, built without importing torch."""
    import imitate

    parser = _Parser(prog="imitate", description="Imitation learning with expressive policies.")
    parser.add_argument("--version", action="version", version=f"imitate {imitate.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_bc_commands(sub)
    _add_rl_commands(sub)
    return parser


def _add_data_commands(sub) -> None:
    p = sub.add_parser("collect", help="run a task's scripted expert and write demonstrations")
    p.add_argument("task", help="task id, e.g. imitate/ForkedPath-v0 or Pendulum-v1")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--out", required=True, help="output HDF5 file (robomimic layout)")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed+i")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument")
    p.add_argument("--expert-kw", action="append", metavar="KEY=VALUE", help="expert keyword argument, e.g. p_left=0.7")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of demos in the 'valid' filter key")
    p.add_argument("--image-compression", default="gzip", metavar="NAME",
                   help="compression of camera keys: gzip (level 4; gzip-1 .. gzip-9), lzf (faster to read lazily, "
                        "larger) or none (default gzip)")
    p.add_argument("--mix", metavar="SOURCE:SHARE,...",
                   help="a mixed-quality file: shares of episodes from the sources expert (the scripted expert), "
                        "noisy (its actions plus Gaussian noise, see --noisy-std) and random (uniform actions), "
                        "e.g. expert:0.2,noisy:0.5,random:0.3; each demo's attrs record its 'quality', and the "
                        "file has a filter key quality_<source> per source")
    p.add_argument("--noisy-std", type=float, default=1.0,
                   help="with --mix: the noisy source's noise standard deviation, as a fraction of each action "
                        "dimension's half-range (default 1.0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("data", help="inspect and convert demonstration files")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data_sub.add_parser("info", help="validate a file fully and print its summary (exit 1 if invalid)")
    q.add_argument("file", help="a robomimic HDF5 file, or a LeRobot, zarr or Minari dataset")
    q.add_argument("--format", dest="data_format", default="auto", metavar="NAME",
                   help=f"format of FILE: {FORMAT_CHOICES} (default auto: detected)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q = data_sub.add_parser("convert", help="write a dataset of any readable format as robomimic HDF5, or a "
                                            "robomimic file as a LeRobot v3 dataset",
                            description="Read SRC (robomimic HDF5, LeRobot, zarr or Minari), validating every "
                                        "episode, and write DST atomically: a robomimic HDF5 file (--format-out "
                                        "robomimic, the default) or a LeRobot v3 dataset folder (--format-out lerobot).")
    q.add_argument("src", help="the dataset to read")
    q.add_argument("dst", help="the file (robomimic) or folder (lerobot) to write; refused if it exists "
                               "unless --overwrite")
    q.add_argument("--format", dest="data_format", default="auto", metavar="NAME",
                   help=f"format of SRC: {FORMAT_CHOICES} (default auto: detected)")
    q.add_argument("--format-out", default="robomimic", choices=["robomimic", "lerobot"],
                   help="what to write (default robomimic)")
    q.add_argument("--obs-keys", default="", metavar="A,B,...", help="observation keys to keep (default: all)")
    q.add_argument("--image-compression", default="gzip", metavar="NAME",
                   help="robomimic output: compression of camera keys, gzip (gzip-1 .. gzip-9), lzf or none "
                        "(default gzip)")
    q.add_argument("--fps", type=float, default=0.0,
                   help="lerobot output: frames per second (default 0: the writer's choice, the env_args' control_freq or 10)")
    q.add_argument("--video-codec", default="h264", choices=["h264", "av1"],
                   help="lerobot output: codec of the camera videos (default h264, the most widely decoded; av1: smaller files)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("teleop", help="drive a 2-D task by hand in a pygame window and record demonstrations")
    p.add_argument("task", nargs="?", default=DEFAULT_TASK, help=f"task id (default {DEFAULT_TASK})")
    p.add_argument("--out", required=True, help="output HDF5 file (robomimic layout)")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed+k")
    p.add_argument("--fps", type=float, default=10, help="environment steps per second (10 = real time)")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _add_bc_commands(sub) -> None:
    from imitate.compare import PER_RUN, CompareConfig, make_config
    from imitate.settings import TrainConfig

    p = sub.add_parser("train", help="train a policy by behaviour cloning", epilog_fn=_head_settings_help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_flags(p, TrainConfig)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a head setting (head.KEY=VALUE, or KEY=VALUE) or encoder.KEY=VALUE; see below")
    p.add_argument("--config", metavar="FILE",
                   help="start from the settings of a run (RUN_DIR or its config.json, or a JSON/YAML file of that "
                        "shape); the flags given here override them")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="roll out a trained policy and print a JSON summary")
    p.add_argument("run_dir", help="a run directory written by imitate train")
    p.add_argument("--episodes", type=int, default=20, help="rollouts")
    p.add_argument("--seed", type=int, default=10000, help="episode i is reset with seed+i (default away from collection seeds)")
    p.add_argument("--env", help="environment id (default: the one the training data names)")
    p.add_argument("--video", metavar="PATH", help="record the first episode (.gif, or .mp4 with imageio-ffmpeg)")
    p.add_argument("--deterministic", action="store_true", help="use the head's most likely action where it has one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("dagger", help="DAgger / human-gated DAgger: the expert labels the states the policy visits",
                       epilog_fn=_head_settings_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_dagger_flags(p)

    p = sub.add_parser("export", help="export a trained policy as one graph (ONNX or torch.export) for deployment")
    p.add_argument("run_dir", help="a run directory written by imitate train")
    p.add_argument("--format", dest="formats", action="append", choices=["onnx", "torch"],
                   help="onnx (model.onnx, for onnxruntime) or torch (model.pt2, torch.export); repeat for both "
                        "(default: onnx)")
    p.add_argument("--out", required=True, help="output folder: the model file(s) and export.json")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("compare", help="train every chosen head on one file with the same budget; report which keep the modes",
                       description="Train every chosen head on one demonstration file with the same budget and "
                                   "seeds, measure success, modes and action distributions, and write "
                                   "OUT/report.html, OUT/report.md and OUT/results.json. Rerunning skips finished runs.",
                       epilog_fn=lambda: _head_settings_help(prefix="HEAD."),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_flags(p, CompareConfig)
    _add_config_flags(p, TrainConfig, skip=PER_RUN, defaults=make_config("", "").train)
    p.add_argument("--set", action="append", metavar="HEAD.KEY=VALUE", default=[],
                   help="a head setting such as gmm.num_modes=3 or diffusion.denoiser=unet, or encoder.KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("demo", help="the main job: imitate compare on the shipped ForkedPath demonstrations")
    p.add_argument("--out", default="runs/demo", help="output folder (report.html, report.md, results.json)")
    p.add_argument("--jobs", type=int, default=0, help="runs trained at once (default: one per CPU core, at most 4)")


def _add_rl_commands(sub) -> None:
    from imitate.algos.maxent_irl import IRLConfig
    from imitate.settings import AdversarialConfig, RLDemoConfig

    for name, what in (("gail", "GAIL"), ("airl", "AIRL (also saves the recovered reward)")):
        p = sub.add_parser(name, help=f"adversarial imitation by {what} from a demo file, PPO generator",
                           epilog_fn=_ppo_help, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_config_flags(p, AdversarialConfig)
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="ppo.KEY=VALUE (PPO) or head.KEY=VALUE (the generator head); listed below")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("rl", help="PPO on an environment's reward, or on a reward recovered by AIRL (--reward); "
                                  "from a BC run (--init), with demonstrations (--demos, --start-states)",
                       epilog_fn=_ppo_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", help="gymnasium environment id (with --init: default the BC run's task)")
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE",
                   help="environment keyword argument, e.g. reward=sparse (with --init: over the run's own)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--reward", metavar="AIRL_RUN_DIR",
                   help="an AIRL run directory (reward.json + reward.safetensors); without it: the env's reward")
    p.add_argument("--reward-entropy", type=float, default=1.0, metavar="X",
                   help="with --reward: train on g(s) - X log pi(a|s), AIRL's maximum-entropy objective (0: g alone)")
    p.add_argument("--head", default="gaussian", help="policy head with a log-probability (default gaussian; with "
                   "--init the BC run's head)")
    p.add_argument("--steps", type=int, default=200_000, help="environment steps")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, environments and sampling")
    p.add_argument("--eval-episodes", type=int, default=20, help="seeded evaluation episodes at the end (and at "
                   "each --eval-every)")
    p.add_argument("--log-every", type=int, default=10_000, help="environment steps between log lines")
    p.add_argument("--expert-return", type=float, help="return that normalized_return counts as 1 "
                   "(default: the demos' mean return recorded with --reward)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="ppo.KEY=VALUE or head.KEY=VALUE; listed below")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(p, RLDemoConfig)

    p = sub.add_parser("irl", help="maximum-entropy IRL on a tabular task (imitate/GridWorld-v0)")
    _add_config_flags(p, IRLConfig)

    _add_offline_command(sub)


def _add_offline_command(sub) -> None:
    from imitate.settings import OfflineConfig

    p = sub.add_parser("offline", help="offline RL on a demo file with rewards: IQL, AWAC or CQL, any head as the actor",
                       description="Learn a policy from a demonstration file's rewards (IQL, AWAC, CQL) instead of "
                                   "copying it: the run directory is an ordinary one (imitate eval, imitate export, "
                                   "load_policy), with the critics in critics.safetensors.",
                       epilog_fn=_offline_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_flags(p, OfflineConfig)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="algo.KEY=VALUE (the algorithm), head.KEY=VALUE (or KEY=VALUE) or encoder.KEY=VALUE; see below")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _offline_help() -> str:
    from imitate.config import describe
    from imitate.settings import OfflineAlgoConfig

    return ("algorithm settings (--set algo.KEY=VALUE):\n" + describe(OfflineAlgoConfig, indent="   ") + "\n"
            + _head_settings_help())


def _head_settings_help(heads: str = "all", prefix: str = "head.", with_log_prob: bool = False) -> str:
    from imitate.config import describe
    from imitate.settings import EncoderConfig
    from policy_heads import get_head_class, registered_heads

    names = [h for h in registered_heads() if not with_log_prob or get_head_class(h).has_log_prob]
    spell = "HEAD.KEY=VALUE" if prefix == "HEAD." else f"{prefix}KEY=VALUE, or KEY=VALUE"
    parts = [f"head settings (--set {spell}):"]
    for name in names:
        parts.append(f" {name}:\n" + describe(get_head_class(name).Config, indent="   "))
    parts.append("encoder settings (--set encoder.KEY=VALUE):\n" + describe(EncoderConfig, indent="   "))
    return "\n".join(parts)


def _ppo_help() -> str:
    from imitate.config import describe
    from imitate.settings import PPOConfig

    return ("PPO settings (--set ppo.KEY=VALUE; per-task presets apply under them):\n" + describe(PPOConfig, indent="   ")
            + "\n" + _head_settings_help(with_log_prob=True).replace("encoder settings", "encoder settings (BC warm starts keep theirs)"))


def _add_config_flags(p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), defaults=None) -> None:
    """One flag per field of the flat config dataclass ``cls`` (dict and dataclass fields excepted), its
    docstring as help; unset flags are absent from the parsed namespace. ``defaults`` (an instance)
    gives the defaults shown in the help, where they differ from the class's."""
    import dataclasses
    import typing

    from imitate.config import field_docs

    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if f.name in skip or kind is dict or dataclasses.is_dataclass(kind):
            continue
        flag = "--" + f.name.replace("_", "-")
        metavar = {int: "N", float: "X", str: "VALUE", bool: "true|false"}.get(kind, "A,B,...")
        default = getattr(defaults, f.name) if defaults is not None else f.default
        p.add_argument(flag, *FLAG_ALIASES.get(f.name, ()), dest=f.name, default=argparse.SUPPRESS, metavar=metavar,
                       help=f"{docs[f.name]} (default: {default!r})")


def _add_dagger_flags(p: argparse.ArgumentParser) -> None:
    from imitate.algos.dagger import DAGGER_TRAIN, PER_ROUND, DaggerConfig
    from imitate.settings import TrainConfig

    _add_config_flags(p, DaggerConfig)
    _add_config_flags(p, TrainConfig, skip=PER_ROUND, defaults=TrainConfig(**DAGGER_TRAIN))
    p.add_argument("--env-kw", action="append", metavar="KEY=VALUE", help="environment keyword argument, e.g. gap_width=0.2")
    p.add_argument("--expert-kw", action="append", metavar="KEY=VALUE", help="expert keyword argument, e.g. p_left=1")
    p.add_argument("--demo-env-kw", action="append", metavar="KEY=VALUE",
                   help="environment keyword argument for the initial demos only, e.g. action_noise=0")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="head.KEY=VALUE (or KEY=VALUE) or encoder.KEY=VALUE for round 0; later rounds keep them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
