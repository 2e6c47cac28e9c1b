"""Diffusion head vs Diffusion Policy's ConditionalUnet1D: training step time, DDIM sampling latency, parameters.

Both denoisers are built at the same dimensions: action dim A, horizon Ta = 16, conditioning
features F = 256 (their `global_cond_dim`), down_dims, kernel 5, 8 GroupNorm groups, a 128-wide
diffusion-step embedding, FiLM with scale and bias (their `cond_predict_scale=True`), and the same
noise schedule (100 DDPM steps, squaredcos_cap_v2, epsilon prediction, clipped samples).

    train (batch 256)     noise + timesteps + add_noise (diffusers' DDPMScheduler) + denoiser
                          forward + MSE + backward + AdamW step.
                          ours "head": DiffusionHead.loss, which does all of that itself;
                          "denoiser": the denoiser alone on precomputed noisy chunks, for both.
    sample (batch 1)      10 DDIM steps (diffusers' DDIMScheduler): ours DiffusionHead.sample; theirs
                          the loop of their policy's conditional_sample (set_timesteps, then model
                          call and scheduler.step per step), under no_grad.
    params                parameter counts of both denoisers.

Rounds alternate between the two networks (and the order flips every round); the table gives
medians over rounds. Training is timed with 1 and 2 torch threads, sampling with 1.

Remaining differences of the networks, by design: ours merges each skip after up-sampling, so its
up blocks run at the resolution of their level (theirs run at half of it, with the level-0 skip
unused), which costs ours about 25% more multiply-adds; ours up-samples by repeating steps and a
kernel-3 convolution where theirs uses a transposed convolution; ours adds 1 to the FiLM scale.

The reference is read at run time from a folder outside this repository, never copied into it:

    git clone https://github.com/real-stanford/diffusion_policy /tmp/diffusion_policy
    python benchmarks/diffusion_vs_reference.py --dp-src /tmp/diffusion_policy

or only its three files, `conditional_unet1d.py`, `conv1d_components.py` and
`positional_embedding.py` from diffusion_policy/model/diffusion/, in one folder:

    mkdir -p /tmp/dp_ref && for f in conditional_unet1d conv1d_components positional_embedding; do
        git -C /tmp/diffusion_policy show HEAD:diffusion_policy/model/diffusion/$f.py > /tmp/dp_ref/$f.py; done
    python benchmarks/diffusion_vs_reference.py --dp-src /tmp/dp_ref
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from policy_heads.diffusion import DiffusionHead

HORIZON = 16
FEATURE_DIM = 256
TIME_EMBED_DIM = 128
KERNEL_SIZE = 5
N_GROUPS = 8
TRAIN_TIMESTEPS = 100
INFERENCE_STEPS = 10


def load_reference(src: Path) -> type:
    """Their ConditionalUnet1D class from a diffusion_policy checkout or a folder holding its three files."""
    if (src / "diffusion_policy" / "model" / "diffusion" / "conditional_unet1d.py").is_file():
        sys.path.insert(0, str(src))
    elif (src / "conditional_unet1d.py").is_file():
        # Their module imports its siblings as diffusion_policy.model.diffusion.*: point that package at src.
        for name, path in (("diffusion_policy", []), ("diffusion_policy.model", []), ("diffusion_policy.model.diffusion", [str(src)])):
            package = types.ModuleType(name)
            package.__path__ = path
            sys.modules.setdefault(name, package)
    else:
        raise SystemExit(f"--dp-src {src}: neither a diffusion_policy checkout nor a folder with conditional_unet1d.py")
    from diffusion_policy.model.diffusion.conditional_unet1d import ConditionalUnet1D

    return ConditionalUnet1D


class Contestants:
    """Ours (DiffusionHead with the U-Net) and theirs (ConditionalUnet1D + diffusers schedulers), same dimensions."""

    def __init__(self, reference: type, action_dim: int, down_dims: tuple[int, ...], seed: int = 0) -> None:
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        torch.manual_seed(seed)
        config = DiffusionHead.Config(
            denoiser="unet", num_train_timesteps=TRAIN_TIMESTEPS, num_inference_steps=INFERENCE_STEPS,
            beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", clip_sample=True,
            time_embed_dim=TIME_EMBED_DIM, down_dims=down_dims, kernel_size=KERNEL_SIZE, n_groups=N_GROUPS,
        )
        self.head = DiffusionHead(FEATURE_DIM, action_dim, HORIZON, config)
        self.model = reference(
            input_dim=action_dim, global_cond_dim=FEATURE_DIM, diffusion_step_embed_dim=TIME_EMBED_DIM,
            down_dims=list(down_dims), kernel_size=KERNEL_SIZE, n_groups=N_GROUPS, cond_predict_scale=True,
        )
        schedule = dict(num_train_timesteps=TRAIN_TIMESTEPS, beta_start=0.0001, beta_end=0.02, beta_schedule="squaredcos_cap_v2",
                        clip_sample=True, prediction_type="epsilon")
        self.ddpm = DDPMScheduler(variance_type="fixed_small", **schedule)
        self.ddim = DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **schedule)
        adamw = dict(lr=1e-4, betas=(0.95, 0.999), eps=1e-8, weight_decay=1e-6)
        self.ours_opt = torch.optim.AdamW(self.head.parameters(), **adamw)
        self.theirs_opt = torch.optim.AdamW(self.model.parameters(), **adamw)

    def params(self) -> dict[str, int]:
        return {"ours": sum(p.numel() for p in self.head.denoiser.parameters()),
                "theirs": sum(p.numel() for p in self.model.parameters())}

    def train_steps(self, batch: int) -> dict[str, Callable[[], None]]:
        """One training step each: ours "head" / "denoiser", theirs "head" / "denoiser"."""
        action = torch.rand(batch, HORIZON, self.head.action_dim) * 2 - 1  # (B, Ta, A)
        features = torch.randn(batch, FEATURE_DIM)  # (B, F)
        noise = torch.randn_like(action)
        t = torch.randint(0, TRAIN_TIMESTEPS, (batch,))
        noisy = self.ddpm.add_noise(action, noise, t)

        def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def theirs_head() -> None:
            eps = torch.randn(action.shape)
            steps = torch.randint(0, TRAIN_TIMESTEPS, (batch,)).long()
            pred = self.model(self.ddpm.add_noise(action, eps, steps), steps, global_cond=features)
            update(self.theirs_opt, F.mse_loss(pred, eps))

        return {
            "ours head": lambda: update(self.ours_opt, self.head.loss(features, action)[0]),
            "theirs head": theirs_head,
            "ours denoiser": lambda: update(self.ours_opt, F.mse_loss(self.head.denoiser(noisy, t, features), noise)),
            "theirs denoiser": lambda: update(self.theirs_opt, F.mse_loss(self.model(noisy, t, global_cond=features), noise)),
        }

    def samplers(self) -> dict[str, Callable[[], torch.Tensor]]:
        """One batch-1 chunk each, 10 DDIM steps."""
        features = torch.randn(1, FEATURE_DIM)
        generator = torch.Generator().manual_seed(0)
        shape = (1, HORIZON, self.head.action_dim)

        @torch.no_grad()
        def theirs() -> torch.Tensor:
            trajectory = torch.randn(shape, generator=generator)
            self.ddim.set_timesteps(INFERENCE_STEPS)
            for t in self.ddim.timesteps:
                out = self.model(trajectory, t, global_cond=features)
                trajectory = self.ddim.step(out, t, trajectory, generator=generator).prev_sample
            return trajectory

        return {"ours": lambda: self.head.sample(features, generator), "theirs": theirs}


def seconds_per_call(fn: Callable[[], object], min_calls: int, min_seconds: float, reduce: str) -> float:
    """Mean ("mean") or median ("median") seconds of at least min_calls calls lasting min_seconds in all."""
    times: list[float] = []
    while len(times) < min_calls or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.mean(times) if reduce == "mean" else statistics.median(times)


def alternate(fns: dict[str, Callable[[], object]], rounds: int, min_calls: int, min_seconds: float, reduce: str) -> dict[str, list[float]]:
    """Per-round timings of each fn; pairs (ours, theirs) of the same kind run back to back, order flipped each round."""
    for fn in fns.values():  # warm-up
        fn()
    names = list(fns)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            results[name].append(seconds_per_call(fns[name], min_calls, min_seconds, reduce))
    return results


def measure(contestants: Contestants, args: argparse.Namespace) -> dict:
    record: dict = {"params": contestants.params(), "train_s": {}, "sample_ms": {}}
    for threads in args.train_threads:
        torch.set_num_threads(threads)
        runs = alternate(contestants.train_steps(args.batch_size), args.rounds, 1, args.min_seconds, "mean")
        record["train_s"][f"{threads}t"] = {name: statistics.median(v) for name, v in runs.items()}
    torch.set_num_threads(1)
    runs = alternate(contestants.samplers(), args.rounds, 3, args.min_seconds, "median")
    record["sample_ms"]["1t"] = {name: 1e3 * statistics.median(v) for name, v in runs.items()}
    return record


def check_same_work(contestants: Contestants) -> None:
    """Both denoisers map (B, Ta, A) to (B, Ta, A) for the same inputs."""
    x = torch.randn(2, HORIZON, contestants.head.action_dim)
    t, features = torch.tensor([3, 70]), torch.randn(2, FEATURE_DIM)
    with torch.no_grad():
        assert contestants.head.denoiser(x, t, features).shape == contestants.model(x, t, global_cond=features).shape == x.shape


def table(results: list[dict]) -> str:
    lines = [f"{'A':>2} {'down_dims':<15} {'what':<22} {'ours':>10} {'theirs':>10} {'ours/theirs':>12}"]
    for r in results:
        key = f"{r['action_dim']:>2} {str(tuple(r['down_dims'])):<15}"
        p = r["params"]
        lines.append(f"{key} {'params (M)':<22} {p['ours'] / 1e6:>10.3f} {p['theirs'] / 1e6:>10.3f} {p['ours'] / p['theirs']:>12.3f}")
        for threads, t in r["train_s"].items():
            for part in ("head", "denoiser"):
                ours, theirs = t[f"ours {part}"], t[f"theirs {part}"]
                lines.append(f"{key} {f'train {part} s, {threads}':<22} {ours:>10.3f} {theirs:>10.3f} {ours / theirs:>12.3f}")
        s = r["sample_ms"]["1t"]
        lines.append(f"{key} {'sample ms, 1t':<22} {s['ours']:>10.2f} {s['theirs']:>10.2f} {s['ours'] / s['theirs']:>12.3f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dp-src", type=Path, required=True, help="diffusion_policy checkout, or a folder with its three U-Net files")
    p.add_argument("--action-dims", type=int, nargs="+", default=[2, 7])
    p.add_argument("--down-dims", nargs="+", default=["64,128,256", "256,512,1024"], help="comma-separated channel lists")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=1.0, help="least time per measurement in a round")
    args = p.parse_args()
    reference = load_reference(args.dp_src)

    results = []
    for down in args.down_dims:
        down_dims = tuple(int(c) for c in down.split(","))
        for action_dim in args.action_dims:
            contestants = Contestants(reference, action_dim, down_dims)
            check_same_work(contestants)
            record = {"action_dim": action_dim, "down_dims": list(down_dims), **measure(contestants, args)}
            results.append(record)
            print(f"done: A={action_dim} down_dims={down_dims}", file=sys.stderr, flush=True)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, batch {args.batch_size} for training, "
          f"batch 1 for sampling ({INFERENCE_STEPS} DDIM steps, 1 thread); medians of {args.rounds} alternating rounds")
    print(table(results))
    print(json.dumps({"benchmark": "diffusion_vs_reference", "torch": torch.__version__, "batch_size": args.batch_size,
                      "horizon": HORIZON, "feature_dim": FEATURE_DIM, "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    main()
