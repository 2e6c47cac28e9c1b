"""Training from pixels on a CPU: the step time of the conv and resnet18 image encoders, the share of a
step spent drawing the batch and augmenting it, and the latency of an exported image policy.

    python benchmarks/image_step.py                       # everything (about 5 minutes on 2 cores)
    python benchmarks/image_step.py --steps 5 --cases conv:1,conv:2,resnet18:1 --no-export

For every case (encoder : cameras) a policy is built on an in-memory store of random 84x84x3 uint8
frames plus a 4-D state (``--episodes`` x 100 steps), with the trainer's settings: B = 64, To = 2,
Ta = 16, the diffusion head with its CPU defaults (MLP denoiser), default encoder (crop 84 -> 76,
spatial softmax). One train step is timed as `imitate.train.train_step` runs it (sample a batch,
forward with random crops, backward, clip, AdamW, EMA), after ``--warmup`` untimed steps; its parts
are timed on their own: ``sample`` (WindowSampler.sample + to_torch) and ``augment`` (the encoder's
crop of every camera, training mode). Medians of ``--steps`` steps.

Latency: the conv policy with one camera (84x84x3 + state) exported to ONNX; one chunk at batch 1,
eager `Policy.predict_chunk` vs the onnxruntime runtime, one thread each, calls interleaved, medians.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from imitate.data import WindowSampler  # noqa: E402
from imitate.data.store import EpisodeStore  # noqa: E402
from imitate.optim import clip_grad_norm, ema_update, make_optimizer  # noqa: E402
from imitate.policy import Policy  # noqa: E402
from imitate.settings import head_settings_for  # noqa: E402
from imitate.spec import ActionSpec, ObsSpec, PolicySpec  # noqa: E402

SIZE, TO, TA, BATCH = 84, 2, 16, 64


def make_store(cameras: int, episodes: int, length: int = 100, seed: int = 0) -> EpisodeStore:
    rng = np.random.default_rng(seed)
    n = episodes * length
    arrays = {f"obs/cam{i}": rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8) for i in range(cameras)}
    arrays["obs/state"] = rng.normal(size=(n, 4)).astype(np.float32)
    arrays["actions"] = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    ends = np.arange(1, episodes + 1) * length
    return EpisodeStore(arrays, ends, [f"demo_{i}" for i in range(episodes)])


def make_policy(store: EpisodeStore, encoder: str) -> Policy:
    obs = {k: ObsSpec(tuple(store.shape(f"obs/{k}")), "uint8" if k.startswith("cam") else "float32",
                      "identity" if k.startswith("cam") else "meanstd") for k in store.obs_keys}
    head, _ = head_settings_for("diffusion", True, "cpu", {})
    spec = PolicySpec(obs, ActionSpec(2), TO, TA, 8, "diffusion", head, {"image_encoder": encoder})
    return Policy.from_data(spec, store)


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def step_times(encoder: str, cameras: int, steps: int, warmup: int, episodes: int) -> dict:
    store = make_store(cameras, episodes)
    torch.manual_seed(0)
    policy = make_policy(store, encoder).train()
    ema = Policy(policy.spec)
    ema.load_state_dict(policy.state_dict())
    ema.eval().requires_grad_(False)
    params, ema_params = list(policy.parameters()), list(ema.parameters())
    optimizer = make_optimizer(params, 1e-4, 1e-6)
    sampler = WindowSampler(store, TO, TA, BATCH, obs_keys=policy.obs_keys, seed=0)
    total, sample, augment = [], [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = sampler.sample().to_torch("cpu")
        t1 = time.perf_counter()
        loss, _ = policy.compute_loss(batch.obs, batch.action, batch.action_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(params, 1.0)
        optimizer.step()
        ema_update(ema_params, params, 0.99)
        t2 = time.perf_counter()
        with torch.no_grad():
            for k in policy.image_keys:
                policy.encoder.augment[k](batch.obs[k])
        t3 = time.perf_counter()
        if i >= warmup:
            total.append(t2 - t0)
            sample.append(t1 - t0)
            augment.append(t3 - t2)
    params_m = sum(p.numel() for p in policy.parameters()) / 1e6
    step, smp, aug = median_ms(total), median_ms(sample), median_ms(augment)
    return {"encoder": encoder, "cameras": cameras, "params_M": params_m, "step_ms": step, "sample_ms": smp,
            "augment_ms": aug, "share": (smp + aug) / step}


def export_latency(calls: int, episodes: int) -> dict:
    from imitate.export.exporter import export_policy
    from imitate.export.runtime import load

    store = make_store(1, episodes)
    torch.manual_seed(0)
    policy = make_policy(store, "conv").eval()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        export_policy(policy, Path(tmp) / "export", ["onnx"])
        export_s = time.perf_counter() - t
        runtime = load(Path(tmp) / "export", "onnx", threads=1, seed=0)
        batch = WindowSampler(store, TO, TA, 1, obs_keys=policy.obs_keys, seed=0).sample()
        torch.set_num_threads(1)
        eager, onnx = [], []
        for i in range(calls + 3):
            t0 = time.perf_counter()
            policy.predict_chunk(batch.obs)
            t1 = time.perf_counter()
            runtime.predict_chunk(batch.obs)
            t2 = time.perf_counter()
            if i >= 3:
                eager.append(t1 - t0)
                onnx.append(t2 - t1)
    return {"export_s": export_s, "eager_ms": median_ms(eager), "onnx_ms": median_ms(onnx),
            "speedup": statistics.median(eager) / statistics.median(onnx)}


def layout_ab(rounds: int) -> dict:
    """One conv trunk's forward + backward on 128 frames of 76x76 (B=64 x To=2): contiguous (NCHW) input
    against channels-last input, interleaved in one process; medians."""
    from imitate.encoders import CameraEncoder
    from imitate.settings import EncoderConfig

    camera = CameraEncoder(3, 76, EncoderConfig(image_encoder="conv").for_key("cam"), "cam")
    x = torch.rand(128, 3, 76, 76)
    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    times: dict[str, list[float]] = {k: [] for k in layouts}
    for i in range(rounds + 1):
        for name, fmt in layouts.items():
            t = time.perf_counter()
            camera.proj(camera.pool(camera.trunk(x.contiguous(memory_format=fmt)))).sum().backward()
            if i:
                times[name].append(time.perf_counter() - t)
    return {k: median_ms(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="conv:1,conv:2,resnet18:1,resnet18:2", help="encoder:cameras, comma-separated")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for the train steps")
    parser.add_argument("--episodes", type=int, default=20, help="episodes of 100 steps in the store")
    parser.add_argument("--calls", type=int, default=50, help="latency: timed calls each")
    parser.add_argument("--no-export", action="store_true", help="skip the export latency")
    parser.add_argument("--layout-ab", type=int, default=0, metavar="ROUNDS",
                        help="only time one conv trunk with contiguous vs channels-last frames, ROUNDS rounds")
    args = parser.parse_args()
    if args.layout_ab:
        torch.set_num_threads(args.threads)
        r = layout_ab(args.layout_ab)
        print(f"conv trunk forward + backward, 128 frames 76x76, {args.threads} threads, median of {args.layout_ab}: "
              f"contiguous {r['contiguous']:.0f} ms, channels-last {r['channels_last']:.0f} ms "
              f"({r['contiguous'] / r['channels_last']:.2f}x)")
        return

    torch.set_num_threads(args.threads)
    print(f"train step, B={BATCH}, To={TO}, {SIZE}x{SIZE}x3 frames cropped to 76, {args.threads} threads, "
          f"median of {args.steps} steps")
    print(f"{'encoder':9s} {'cams':>4s} {'params':>8s} {'step':>10s} {'sample':>9s} {'augment':>9s} {'share':>6s}")
    for case in args.cases.split(","):
        encoder, cams = case.split(":")
        r = step_times(encoder, int(cams), args.steps, args.warmup, args.episodes)
        print(f"{r['encoder']:9s} {r['cameras']:4d} {r['params_M']:7.2f}M {r['step_ms']:8.0f}ms {r['sample_ms']:7.1f}ms "
              f"{r['augment_ms']:7.1f}ms {100 * r['share']:5.1f}%", flush=True)
    if not args.no_export:
        r = export_latency(args.calls, 4)
        print(f"export (conv, 1 camera, diffusion mlp): {r['export_s']:.0f} s; batch 1, 1 thread: eager "
              f"{r['eager_ms']:.2f} ms, onnxruntime {r['onnx_ms']:.2f} ms ({r['speedup']:.2f}x)")


if __name__ == "__main__":
    main()
