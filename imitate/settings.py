"""The settings of the trainer, the observation encoder, PPO, the adversarial algorithms, offline RL and
demonstrations in RL, without torch.

Each is a flat dataclass with a docstring under every field (`imitate.config` reads them for
``--help``). They live here, apart from the code that uses them, so that the command-line parser
builds every flag without importing torch; `imitate.train`, `imitate.encoders`, `imitate.algos.ppo`
and `imitate.algos.adversarial` re-export them. `imitate compare` and `imitate dagger` nest a
`TrainConfig` instead of repeating its fields.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitate.config import apply_overrides
from imitate.errors import ConfigError


@dataclass
class TrainConfig:
    """Settings of a behaviour-cloning run (head and encoder settings go through ``--set``)."""

    data: str = ""
    """Demonstrations: a robomimic HDF5 file, or a LeRobot, zarr or Minari dataset (--format)."""
    data_format: str = "auto"
    """Format of --data (--format): auto (an HDF5 file is robomimic's layout; a folder is LeRobot, zarr or
    Minari, as detected), robomimic, lerobot, zarr or minari."""
    out: str = ""
    """Run directory to create (config.json, model.safetensors, train_state.safetensors, logs)."""
    head: str = "diffusion"
    """Policy head: a registered head name (`imitate train --help` lists them with their settings)."""
    steps: int = 5000
    """Optimizer steps."""
    batch_size: int = 256
    """Windows per batch, in all: with N processes each draws batch_size / N (must divide evenly)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up, then cosine decay to zero at the last step."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm to this value (0: no clipping)."""
    ema_decay: float = 0.999
    """Largest decay of the weights' exponential moving average (warms up from 0 as 1 - 10/(10+step))."""
    obs_horizon: int = 2
    """To: observation steps the policy sees (the current one and To-1 before it)."""
    action_horizon: int = 16
    """Ta: actions predicted per chunk."""
    n_act: int = 8
    """Actions executed from each chunk before the policy predicts again (1..Ta)."""
    obs_keys: tuple[str, ...] = ()
    """Observation keys to use (empty: every key of the file)."""
    obs_norm: str = "meanstd"
    """Observation normalization: meanstd, minmax or identity."""
    action_norm: str = "minmax"
    """Action normalization: minmax (to [-1, 1], what the heads expect) or identity."""
    lazy: bool = False
    """Read the file lazily in blocks (for files larger than memory)."""
    seed: int = 0
    """Seed of weights, batch order and sampling noise: the same seed on CPU gives the same weights."""
    log_every: int = 50
    """Steps between log lines (progress bar, TensorBoard, metrics.jsonl) and NaN checks."""
    val_every: int = 500
    """Steps between validation losses on the file's 'valid' split (0: never)."""
    val_batches: int = 4
    """Batches of the fixed validation set."""
    eval_every: int = 0
    """Steps between rollout evaluations (0: only at the end)."""
    eval_episodes: int = 20
    """Rollouts per evaluation (0: no rollouts)."""
    eval_seed: int = 10000
    """Episode i of an evaluation is reset with seed eval_seed + i (away from collection seeds)."""
    ckpt_every: int = 1000
    """Steps between checkpoints (one is also written at the end and on Ctrl-C)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available); with several processes each takes its local rank's GPU."""
    precision: str = "fp32"
    """fp32, or bf16: the forward pass and loss under bfloat16 autocast (weights, gradients, EMA stay fp32)."""
    dist_timeout: float = 1800.0
    """Several processes: seconds a process waits for the others at a collective before the run fails."""
    sizing: str = "auto"
    """Head defaults: cpu (each head's CPU-sized settings, e.g. diffusion's MLP denoiser), full (the
    heads' own defaults), or auto (cpu when training on a CPU, full on a GPU); --set overrides either."""
    max_bad_grad_steps: int = 5
    """Divergence guard: a step whose gradient norm is inf or NaN is skipped and counted; this many
    in a row stop training with an error (the last good checkpoint is kept)."""
    loss_spike: float = 1e4
    """Divergence guard: stop when a logged loss exceeds the median of the earlier logged losses by
    more than this many times max(1, |median|) (0: off)."""
    init: str = ""
    """Start from the model weights of this run directory (same head and shapes; its normalizer
    statistics and head settings are kept); empty: fresh weights."""


@dataclass
class EncoderConfig:
    """Settings of the observation encoder: an MLP over every key's history; camera images (uint8
    (H, W, C) keys) first go through an image trunk each, whose features join the MLP's input."""

    hidden_dims: tuple[int, ...] = (256,)
    """Widths of the hidden layers before the feature layer (empty: one linear layer)."""
    feature_dim: int = 256
    """Width of the feature vector handed to the head."""
    layer_norm: bool = True
    """Apply LayerNorm to the features (keeps their scale steady for every head)."""
    image_encoder: str = "auto"
    """Image keys only: the trunk per camera, conv (4 conv layers of DrQ, 32 channels: fast on a CPU) or
    resnet18 (ResNet-18 with GroupNorm, as Diffusion Policy: for a GPU); auto: conv when no GPU is
    found (or --sizing cpu), resnet18 on a GPU (or --sizing full)."""
    image_feature_dim: int = 64
    """Image keys only: features per camera and observation step (a linear layer after the pooling)."""
    image_pool: str = "spatial_softmax"
    """Image keys only: spatial_softmax (the expected x, y of num_keypoints learned keypoints) or flatten
    (every cell of the last feature map, conv trunk only)."""
    num_keypoints: int = 32
    """Image keys only: keypoints of the spatial softmax."""
    conv_channels: int = 32
    """Image keys only: channels of the conv trunk's layers."""
    crop_size: int = 0
    """Image keys only: side of the square crop the trunk sees: random while training, centred when
    evaluating and in exports (0: round(0.9 * the image's smaller side), 84 -> 76; the full size: no crop)."""
    random_shift: int = 0
    """Image keys only: DrQ's random shift while training: pad by this many pixels (edge copies), then
    crop back at a random offset (0: off; 4 is DrQ's value for 84x84)."""
    color_jitter: float = 0.0
    """Image keys only: while training, scale brightness and contrast per sample by factors drawn
    uniformly from [1 - color_jitter, 1 + color_jitter] (0: off)."""
    share_image_encoder: bool = False
    """Image keys only: one trunk for every camera (false: one trunk per camera)."""
    weights: str = ""
    """Image keys only: start the resnet18 trunk from this safetensors file with torchvision's resnet18
    names (conv1, bn1, layer1.0.conv1, ...; fc and BatchNorm running statistics are not used)."""
    keys: dict = field(default_factory=dict)
    """Per camera: image settings that differ from the ones above, as JSON, e.g.
    {"wrist_image": {"image_encoder": "conv", "crop_size": 56}} (config files: encoder_config.keys)."""

    #: the settings a camera may have of its own (under ``keys``)
    IMAGE_SETTINGS = ("image_encoder", "image_feature_dim", "image_pool", "num_keypoints", "conv_channels",
                      "crop_size", "random_shift", "color_jitter", "weights")

    def __post_init__(self) -> None:
        if isinstance(self.keys, str):        # --set encoder.keys='{"cam": {...}}'
            try:
                self.keys = json.loads(self.keys) if self.keys.strip() else {}
            except json.JSONDecodeError as e:
                raise ConfigError(f"encoder.keys: not valid JSON ({e}); e.g. "
                                  f"'{{\"wrist_image\": {{\"image_encoder\": \"conv\"}}}}'") from None
        if not isinstance(self.keys, dict) or not all(isinstance(v, dict) for v in self.keys.values()):
            raise ConfigError(f"encoder.keys must map camera keys to objects of image settings, got {self.keys!r}")
        # typed values (a string from a command line converted); unknown or malformed ones fail here
        self.keys = {key: {n: self.for_key(key)[n] for n in given} for key, given in self.keys.items()}
        self._check({k: getattr(self, k) for k in self.IMAGE_SETTINGS}, "encoder")

    def for_key(self, key: str) -> dict[str, Any]:
        """The image settings of camera ``key``: the shared ones, replaced by its entry in ``keys``."""
        from policy_heads.fields import convert_fields

        given = self.keys.get(key, {})
        unknown = sorted(set(given) - set(self.IMAGE_SETTINGS))
        if unknown:
            raise ConfigError(f"encoder.keys.{key}: {unknown} cannot differ per camera; these can: "
                              f"{', '.join(self.IMAGE_SETTINGS)}")
        try:
            values = {**{k: getattr(self, k) for k in self.IMAGE_SETTINGS},
                      **convert_fields(EncoderConfig, given, f"encoder.keys.{key}")}
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self._check(values, f"encoder.keys.{key}")
        return values

    @staticmethod
    def _check(v: dict[str, Any], owner: str) -> None:
        problems = []
        if v["image_encoder"] not in ("auto", "conv", "resnet18"):
            problems.append(f"image_encoder {v['image_encoder']!r}: choose auto, conv or resnet18")
        if v["image_pool"] not in ("spatial_softmax", "flatten"):
            problems.append(f"image_pool {v['image_pool']!r}: choose spatial_softmax or flatten")
        for name in ("image_feature_dim", "num_keypoints", "conv_channels"):
            if v[name] < 1:
                problems.append(f"{name} must be at least 1 (got {v[name]})")
        for name in ("crop_size", "random_shift"):
            if v[name] < 0:
                problems.append(f"{name} must be 0 or more (got {v[name]})")
        if not 0.0 <= v["color_jitter"] < 1.0:
            problems.append(f"color_jitter must be in [0, 1) (got {v['color_jitter']})")
        if v["weights"] and not str(v["weights"]).endswith(".safetensors"):
            problems.append(f"weights {v['weights']!r}: a .safetensors file (pickled checkpoints are never read)")
        if problems:
            raise ConfigError(f"{owner}: " + "; ".join(problems))


@dataclass
class PPOConfig:
    """Settings of the PPO inner loop (``--set ppo.key=value`` on the command line)."""

    n_envs: int = 8
    """Environments stepped in lockstep (gymnasium SyncVectorEnv)."""
    n_steps: int = 256
    """Steps per environment per rollout (a rollout holds n_envs * n_steps transitions)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    lr: float = 3e-4
    """Adam learning rate (policy and value network)."""
    clip: float = 0.2
    """PPO's ratio clipping range."""
    epochs: int = 10
    """Passes over each rollout."""
    batch_size: int = 256
    """Transitions per minibatch."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this value."""
    target_kl: float = 0.0
    """Stop an update's remaining minibatches once a minibatch's approximate KL between the rollout's
    policy and the current one exceeds 1.5 * target_kl (0: never)."""
    norm_reward: bool = True
    """Scale rewards by the running std of the discounted return (no mean subtraction: signs stay)."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the value network (tanh)."""


@dataclass
class AdversarialConfig:
    """Settings of a GAIL or AIRL run (PPO settings: ``--set ppo.key=value``; head: ``--set head.key=value``)."""

    data: str = ""
    """Expert demonstrations (robomimic HDF5, or a LeRobot, zarr or Minari dataset: --format); next_obs is read
    from them, or derived from the next row where the format has none."""
    data_format: str = "auto"
    """Format of --data (--format): auto (an HDF5 file is robomimic's layout; a folder is LeRobot, zarr or
    Minari, as detected), robomimic, lerobot, zarr or minari."""
    out: str = ""
    """Run directory to create."""
    env: str = ""
    """Gymnasium environment id (default: the one the demo file names)."""
    head: str = "gaussian"
    """Generator head: any registered head with a log-probability (Discrete actions: one that models them)."""
    steps: int = 500_000
    """Environment steps."""
    init: str = ""
    """BC run directory to start the generator from (same head, obs/action horizon 1)."""
    seed: int = 0
    """Seed of networks, environments and sampling."""
    reward: str = "auto"
    """Reward given to PPO: positive (-log(1-D)), logit (log D - log(1-D)), or auto (the algorithm's
    default: positive for GAIL and AIRL)."""
    disc_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the discriminator / reward networks."""
    disc_lr: float = 3e-4
    """Adam learning rate of the discriminator."""
    disc_batch: int = 256
    """Generator (and as many expert) transitions per discriminator minibatch."""
    disc_epochs: int = 1
    """Passes of the discriminator over each rollout."""
    grad_penalty: float = -1.0
    """Weight of the zero-centred gradient penalty on expert/generator interpolates (0: off; below 0:
    the algorithm's default, 10 for GAIL and 0 for AIRL)."""
    disc_replay: int = 0
    """Generator transitions of earlier rollouts kept for the discriminator (half of each generator
    minibatch is drawn from them; 0: the current rollout only)."""
    log_every: int = 10_000
    """Environment steps between log lines."""
    ckpt_every: int = 100_000
    """Environment steps between checkpoints (one is also written at the end)."""
    eval_episodes: int = 20
    """Seeded evaluation episodes at the end (0: none)."""


def train_config_from_file(path: str | Path) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """Settings, head settings and encoder settings from a run's config.json (or a JSON or YAML file of the
    same shape: ``train`` and optionally ``policy.head_config`` / ``policy.encoder_config``), to train
    again; the ``out`` it names is dropped."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"--config {path}: reading YAML needs PyYAML (pip install pyyaml)") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("train", {}), dict):
        raise ConfigError(f"--config {path}: expected an object with a 'train' section (as a run's config.json)")
    policy = data.get("policy") or {}
    train_values = {k: v for k, v in (data.get("train") or {}).items() if k != "out"}
    cfg = apply_overrides(TrainConfig(), train_values, f"--config {path}: train")
    return cfg, dict(policy.get("head_config") or {}), dict(policy.get("encoder_config") or {})


def head_settings_for(head: str, on_cpu: bool, sizing: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The head settings a run uses: the head's CPU-sized defaults (`cpu_defaults`) where ``sizing`` is cpu,
    or auto and the run trains ``on_cpu``, under the ``given`` ones; and a one-line note when the defaults applied."""
    from policy_heads import get_head_class

    if sizing not in ("auto", "cpu", "full"):
        raise ConfigError(f"--sizing {sizing!r}: choose auto, cpu or full")
    cpu = sizing == "cpu" or (sizing == "auto" and on_cpu)
    defaults = {k: v for k, v in get_head_class(head).cpu_defaults().items() if k not in given} if cpu else {}
    note = ""
    if defaults:
        chosen = " ".join(f"{k}={v}" for k, v in defaults.items())
        why = "no GPU found" if sizing == "auto" else "--sizing cpu"
        note = (f"{why}: using the CPU-sized defaults of the {head} head ({chosen}); pass --set KEY=VALUE or "
                f"--sizing full to override")
    return {**defaults, **given}, note


@dataclass
class OfflineConfig:
    """Settings of an offline RL run, `imitate offline` (algorithm settings: ``--set algo.KEY=VALUE``;
    head: ``--set head.KEY=VALUE``; encoder: ``--set encoder.KEY=VALUE``)."""

    algo: str = "iql"
    """Algorithm: iql, awac or cql."""
    data: str = ""
    """Demonstrations with rewards and dones (robomimic HDF5, or a LeRobot, zarr or Minari dataset: --format)."""
    data_format: str = "auto"
    """Format of --data (--format): auto (an HDF5 file is robomimic's layout; a folder is LeRobot, zarr or
    Minari, as detected), robomimic, lerobot, zarr or minari."""
    out: str = ""
    """Run directory to create (an ordinary run: config.json, model.safetensors; plus critics.safetensors)."""
    head: str = "gaussian"
    """Policy head (the actor): any registered head for iql and awac; deterministic or gaussian for cql."""
    steps: int = 10000
    """Gradient steps on the file's transitions."""
    online_steps: int = 0
    """Environment steps after the offline steps (iql, awac): each is followed by one update on a batch
    that mixes offline and online transitions (algo.online_ratio); the file must name its environment."""
    online_eval_every: int = 0
    """Online phase: environment steps between evaluations of the saved (EMA) actor, eval_episodes seeded
    episodes each, one also before the first online step (metrics.jsonl: eval/return, eval/success_rate at
    env_steps); 0: only the final evaluation."""
    online_demos: str = ""
    """Online phase: a demonstration file (with rewards and dones) of which a fixed share of every batch
    is drawn (algo.demo_ratio), besides the offline data and the online transitions."""
    batch_size: int = 256
    """Transitions per batch."""
    lr: float = 3e-4
    """Peak learning rate of the actor (AdamW, linear warm-up then cosine decay)."""
    weight_decay: float = 0.0
    """AdamW weight decay of the actor."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up of the actor."""
    grad_clip: float = 1.0
    """Clip each network's gradient norm to this value (0: no clipping)."""
    ema_decay: float = 0.999
    """Largest decay of the actor's weight average (what is saved, evaluated and exported)."""
    obs_horizon: int = 2
    """To: observation steps the policy and the critics see."""
    action_horizon: int = 8
    """Ta: actions the policy predicts per chunk."""
    n_act: int = 4
    """Actions executed from each chunk (1..Ta); the critics score these executed actions as one decision
    (n_act-step backups: the value travels n_act steps per update). 2/8/4 measured at least as well as
    one-step and as BC's 2/16/8 on StitchMaze, mixed ForkedPath and mixed Pendulum (BENCHMARKS.md)."""
    obs_keys: tuple[str, ...] = ()
    """Observation keys to use (empty: every key of the file)."""
    obs_norm: str = "meanstd"
    """Observation normalization: meanstd, minmax or identity."""
    action_norm: str = "minmax"
    """Action normalization: minmax (to [-1, 1], what the heads expect)."""
    seed: int = 0
    """Seed of weights, batch order and sampling noise: the same seed on CPU gives the same weights."""
    log_every: int = 100
    """Steps between log lines (progress bar, metrics.jsonl)."""
    ckpt_every: int = 1000
    """Steps between checkpoints (one is also written at the end and on Ctrl-C)."""
    eval_episodes: int = 20
    """Rollouts of the final policy in the file's environment (0: none)."""
    eval_seed: int = 10000
    """Episode i of the final evaluation is reset with seed eval_seed + i."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    sizing: str = "auto"
    """Head defaults: cpu, full or auto (cpu on a CPU), as in imitate train."""


@dataclass
class OfflineAlgoConfig:
    """Settings of the offline algorithms (``--set algo.KEY=VALUE``); IQL's defaults are the IQL paper's
    for locomotion (expectile 0.7, temperature 3, weights clipped at 100, two Q-networks)."""

    gamma: float = 0.99
    """Discount factor per environment step."""
    polyak: float = 0.005
    """Target networks: target <- (1 - polyak) target + polyak online, after every step."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics (constant)."""
    n_q: int = 2
    """Q-networks in the ensemble; targets use their minimum (clipped double Q)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of each critic's MLP (after its own observation encoder)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before any use."""
    reward_shift: float = 0.0
    """Added to every (scaled) reward before any use: -1 turns a sparse 0/1 goal reward into a cost per step
    (the IQL paper's antmaze setting), so one step closer to the goal is worth about one unit of advantage."""
    expectile: float = 0.7
    """IQL: the expectile tau of V's regression on Q (0.5: the mean; towards 1: the best actions)."""
    beta: float = -1.0
    """Temperature of advantage-weighted regression, weights exp(beta * A); below 0: the algorithm's
    default (IQL 3.0, the IQL paper's locomotion value; AWAC 1.0, the AWAC paper's lambda = 1)."""
    max_weight: float = 100.0
    """Advantage weights are clipped at this value."""
    cql_alpha: float = 5.0
    """CQL: weight of the conservative penalty (logsumexp of Q over sampled actions minus Q of the data)."""
    cql_samples: int = 10
    """CQL: actions drawn per state, each from the uniform box and from the policy (at s and at s')."""
    cql_entropy: float = 0.1
    """CQL with the gaussian head: weight of the log-probability in the SAC-style actor loss."""
    online_ratio: float = 0.5
    """Online phase: share of each batch drawn from the online transitions (the rest from the file)."""
    demo_ratio: float = 0.0
    """Online phase with --online-demos: share of each batch drawn from that file's transitions (taken
    from the offline data's share; online_ratio + demo_ratio <= 1)."""


#: Heads with a reparameterized sample (a differentiable function of the weights given the noise): the
#: actors CQL's SAC-style update can train (`imitate.algos.cql`).
CQL_ACTOR_HEADS = ("deterministic", "gaussian")


@dataclass
class RLDemoConfig:
    """Demonstrations inside `imitate rl`: a BC warm start, the DAPG demonstration term and start states
    drawn from demonstrations (`imitate.algos.finetune`)."""

    init: str = ""
    """BC run directory to start PPO from (its weights, head and observation normalizer, kept frozen);
    the head needs a log-probability and obs/action horizons of 1."""
    demos: str = ""
    """Demonstration file for the DAPG term (the BC run's own file, or any with the same keys)."""
    demo_coef: float = 0.0
    """C of the DAPG term C * D^k * BC loss on a batch of demonstrations, added to every PPO minibatch
    (k: PPO updates so far); 0: no term."""
    demo_decay: float = 0.95
    """D of the DAPG term: its weight shrinks by this factor after every PPO update."""
    demo_batch: int = 256
    """Demonstration rows per minibatch of the DAPG term."""
    value_warmup: int = 1
    """With --init: rollouts of the BC policy that only train the value function before the first policy
    update (their environment steps count in --steps; 0: none)."""
    value_warmup_epochs: int = 20
    """Passes over each warm-up rollout (value loss only)."""
    start_states: str = ""
    """Demonstration file with per-step ``states`` (imitate collect writes them for imitate's tasks):
    episodes start from its states, mixed with the task's own starts."""
    curriculum: str = "reverse"
    """With --start-states: reverse (from the demos' last steps, moving back as success grows) or
    uniform (any step of any demo)."""
    start_share: float = 1.0
    """With --start-states: share of resets from demonstration states at the first step; it falls
    linearly to 0 at the last step (the rest use the task's own start distribution)."""
    reverse_step: int = 5
    """Reverse curriculum: steps the start point moves back (from the demo's end) each time."""
    reverse_success: float = 0.6
    """Reverse curriculum: success rate of the episodes started at the current point (over the last
    reverse_window) that moves it back."""
    reverse_window: int = 20
    """Reverse curriculum: episodes started at the current point that are judged together."""
    eval_every: int = 0
    """Environment steps between evaluations on the task's own starts (success rate and return, logged as
    eval/...; one also before training); 0: only at the end."""
