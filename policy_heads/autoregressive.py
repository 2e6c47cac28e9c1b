"""Autoregressive head: the action chunk as a sequence of discrete tokens, decoded one after another.

Each action dimension is cut into bins (continuous actions) or already holds category indices
(discrete actions, config `discrete_nvec`). The Ta * A tokens of a chunk are ordered step-major,

    token p  <->  step p // A, dimension p % A

and each token is predicted from the features and the tokens before it. Coarser tokens (config
`dims_per_token` = g > 1): each token holds g consecutive dimensions of a step, its category the
mixed-radix number of their bins (bins ** g categories), so a chunk is N = Ta * G tokens, G = A / g
tokens per step.

Two layouts (config `layout`) compute the same kind of distribution:

- "entry": a causal transformer with one position per token,

      input position:   0          1      2            N-1
      input:          [feat]     tok_0  tok_1   ...  tok_{N-2}
      predicts:        tok_0     tok_1  tok_2   ...  tok_{N-1}

- "step": a causal transformer with one position per step (Ta positions, 1/G as many), whose input at
  step t is the features (t = 0) or the sum of the embeddings of step t-1's tokens; its output h_t
  then decodes step t's G tokens one after another with a small readout, token j's logits from
  relu(W (h_t + r_j + e_0 + ... + e_{j-1})), where r_j marks the token's place in the step and e_i
  embeds the step's earlier tokens. The probabilities are exact (a product of per-token softmaxes),
  a token has bins categories (not bins ** A), and training costs about the transformer over Ta
  positions. Its blocks and readout use ReLU (GELU's backward costs several times more on a CPU).

Saved configurations written before the `layout` field existed lack it and load with the class
default "entry", which is what they were trained as (the golden checkpoint
tests/golden/autoregressive checks it). New runs get "step": the head's CPU defaults (`cpu_defaults`,
applied to runs that train on a CPU) and RL defaults (`rl_defaults`) name it, and every saved config
names its layout from then on (tests/golden/autoregressive_step holds one). A run sized for a GPU
(trained on one, or `--sizing full`) keeps the class default unless it sets `layout=step`.

Training is cross-entropy of the true tokens (teacher forcing, one pass). `sample` draws the tokens
one at a time (with a key/value cache, so each transformer position is computed once) and maps each
bin to its value (`bin_values`, below). `log_prob` is the sum of the token log-probabilities of the
bins the actions fall into: a discrete log-probability (of the bin cells), not a density. `mode`
takes the most likely token at every step (greedy decoding).

Bins: "uniform" cuts [-1, 1] into equal bins; "quantile" puts the same share of the training
actions in every bin, with edges computed by `prepare(actions)` and kept as a buffer (saved with
the weights). A bin decodes to `bin_values`: its centre with uniform bins; with quantile bins the mean
of the training actions that fall in it (its centre if none do). Quantile edges coincide where the
actions pile up on one value (a gripper's -1 and +1, actions clipped at the limits), and a bin then
spans from that value to the next edge: its centre would move the value (a gripper's -1 decoded to
0, half closed), its mean keeps it. Checkpoints saved before `bin_values` existed load with the bin
centres, which they were trained and evaluated with.

Discrete mode: the action holds integer category indices stored as floats, dimension d has
`discrete_nvec[d]` categories, and samples are indices (as floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from policy_heads.base import PolicyHead, masked_mean, step_mask_to_entries, weighted_mean


class _CausalBlock(nn.Module):
    """Pre-norm causal transformer block: whole sequences for training, one position at a time for decoding.

    The feed-forward layer is ff_mult * d_model wide, its activation `activation` (None: tanh-approximated GELU,
    what the "entry" layout was trained with).
    """

    def __init__(self, d_model: int, num_heads: int, ff_mult: int = 4, activation: type[nn.Module] | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), activation() if activation else nn.GELU(approximate="tanh"),
                                nn.Linear(ff_mult * d_model, d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> (B, T, D), every position attending to itself and the ones before it."""
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D / H)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.ff(self.norm2(x))

    def step(self, x: Tensor, cache: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One new position x (B, D) -> (B, D), attending to itself and the cached positions before it.

        cache holds the keys and values (B, H, P, D / H) of the P earlier positions (None when P = 0);
        the returned cache has this position's appended (a new tensor: exporters trace no in-place writes).
        """
        batch, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, 3, self.num_heads, 1, -1).unbind(1)  # each (B, H, 1, D / H)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.reshape(batch, width))
        return x + self.ff(self.norm2(x)), (k, v)


class AutoregressiveHead(PolicyHead, name="autoregressive"):
    """Discretized actions predicted token by token by a causal transformer."""

    has_log_prob = True
    has_mode = True
    discrete_actions = True
    step_cost = 2.0

    @classmethod
    def cpu_defaults(cls) -> dict[str, str]:
        return {"layout": "step", "d_model": "32", "num_heads": "2", "num_layers": "2"}

    @classmethod
    def rl_defaults(cls) -> dict:
        return {"layout": "step", "d_model": 32, "num_layers": 1, "num_heads": 2, "bins": 21, "binning": "uniform"}

    @dataclass
    class Config:
        bins: int = 64
        """Number of bins per continuous action dimension (ignored in discrete mode)."""
        binning: str = "quantile"
        """Bin edges: "uniform" on [-1, 1], or "quantile" of the training actions (needs prepare())."""
        discrete_nvec: tuple[int, ...] = ()
        """Categories per action dimension for discrete actions; empty = continuous actions."""
        d_model: int = 128
        """Width of the transformer."""
        num_layers: int = 3
        """Number of transformer blocks."""
        num_heads: int = 4
        """Attention heads per block (must divide d_model)."""
        dims_per_token: int = 1
        """Action dimensions per token (must divide A): 1, or more for fewer, joint tokens (bins ** dims categories)."""
        layout: str = "entry"
        """Transformer positions: "entry" (one per token) or "step" (one per step of the chunk, whose tokens a small
        readout then decodes one after another; ReLU blocks). A saved config without this field means "entry"; new
        runs get "step" from the head's CPU and RL defaults."""
        ff_mult: int = 4
        """Width of each block's feed-forward layer, as a multiple of d_model."""

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        cfg = self.config
        self.discrete = bool(cfg.discrete_nvec)
        if self.discrete:
            if len(cfg.discrete_nvec) != action_dim or min(cfg.discrete_nvec) < 1:
                raise ValueError(
                    f"autoregressive head: config field 'discrete_nvec' needs one positive category count per action "
                    f"dimension (action_dim={action_dim}), got {cfg.discrete_nvec}"
                )
            categories = list(cfg.discrete_nvec)
        else:
            if cfg.bins < 2:
                raise ValueError(f"autoregressive head: config field 'bins' must be >= 2, got {cfg.bins}")
            if cfg.binning not in ("uniform", "quantile"):
                raise ValueError(f"autoregressive head: config field 'binning' must be 'uniform' or 'quantile', got {cfg.binning!r}")
            categories = [cfg.bins] * action_dim
            self.register_buffer("edges", torch.linspace(-1.0, 1.0, cfg.bins + 1).repeat(action_dim, 1))  # (A, bins + 1)
            self.register_buffer("prepared", torch.tensor(cfg.binning == "uniform"))
            self.register_buffer("bin_values", _centres(self.edges))  # (A, bins): what each bin decodes to
        if cfg.d_model % cfg.num_heads:
            raise ValueError(f"autoregressive head: num_heads={cfg.num_heads} must divide d_model={cfg.d_model}")
        self._edges_ready = self.discrete or cfg.binning == "uniform"
        self.register_load_state_dict_post_hook(_read_prepared_flag)

        group = cfg.dims_per_token
        if group < 1 or action_dim % group:
            raise ValueError(f"autoregressive head: config field 'dims_per_token' must divide action_dim={action_dim}, got {group}")
        self.groups = action_dim // group  # tokens per step
        self.num_tokens = action_horizon * self.groups
        # Mixed radix: a token of dims (d_0, ..., d_{g-1}) is sum_j index_j * radix_j, the last dimension fastest.
        per_dim = torch.tensor(categories).view(self.groups, group)
        later = torch.cat([per_dim.flip(1).cumprod(1).flip(1)[:, 1:], torch.ones(self.groups, 1, dtype=torch.long)], dim=1)
        self.register_buffer("radix", later.reshape(-1), persistent=False)  # (A,)
        self.register_buffer("dim_sizes", per_dim.reshape(-1), persistent=False)  # (A,)
        sizes = per_dim.prod(1)  # categories per token of a step (groups,)
        offsets = torch.cumsum(sizes, 0) - sizes
        dim_of_token = torch.arange(self.num_tokens) % self.groups
        most = int(sizes.max())
        invalid = torch.arange(most).unsqueeze(0) >= sizes[dim_of_token].unsqueeze(1)  # (N, most)
        self.register_buffer("token_offset", offsets[dim_of_token], persistent=False)  # (N,)
        self.register_buffer("logit_mask", torch.zeros(invalid.shape).masked_fill(invalid, float("-inf")), persistent=False)

        if cfg.layout not in ("entry", "step"):
            raise ValueError(f"autoregressive head: config field 'layout' must be 'entry' or 'step', got {cfg.layout!r}")
        if cfg.ff_mult < 1:
            raise ValueError(f"autoregressive head: config field 'ff_mult' must be >= 1, got {cfg.ff_mult}")
        self.by_step = cfg.layout == "step"
        self.register_buffer("group_offset", offsets, persistent=False)  # (groups,)
        self.offsets = offsets.tolist()  # the same as ints: constants for decoding (exporters trace no reads of values)

        self.prefix = nn.Linear(feature_dim, cfg.d_model)
        self.embed = nn.Embedding(int(sizes.sum()), cfg.d_model)
        positions = action_horizon if self.by_step else self.num_tokens
        self.position = nn.Parameter(torch.randn(positions, cfg.d_model) * 0.02)
        self.blocks = nn.ModuleList(_CausalBlock(cfg.d_model, cfg.num_heads, cfg.ff_mult, nn.ReLU if self.by_step else None)
                                    for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.masked = bool(invalid.any())  # some token has fewer categories than the readout's K
        if self.by_step:  # the readout of a step's tokens, each given the ones before it in the step
            self.token_embed = nn.Embedding(int(sizes.sum()), cfg.d_model)
            self.token_position = nn.Parameter(torch.randn(self.groups, cfg.d_model) * 0.02)
            self.readout_hidden = nn.Linear(cfg.d_model, cfg.d_model)
        self.readout = nn.Linear(cfg.d_model, most)

    def upgrade_state_dict(self, state: dict, prefix: str = "") -> dict:
        """A checkpoint saved before `bin_values` existed gets the centres of its own edges (what it was
        trained and evaluated with); `imitate.checkpoint.load_state_into` calls this before loading."""
        key = prefix + "bin_values"
        if self.discrete or key in state or prefix + "edges" not in state:
            return state
        return {**state, key: _centres(state[prefix + "edges"])}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.update(self.upgrade_state_dict(state_dict, prefix))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # Tokens <-> actions ---------------------------------------------------------------------

    def prepare(self, actions: Tensor) -> None:
        """Check the training actions (N, A); in quantile mode, set the bin edges from them."""
        if actions.dim() != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(f"autoregressive head: prepare() needs actions of shape (N, {self.action_dim}), got {tuple(actions.shape)}")
        if self.discrete:
            nvec = torch.tensor(self.config.discrete_nvec, device=actions.device)
            if not bool(((actions == actions.round()) & (actions >= 0) & (actions < nvec)).all()):
                raise ValueError(
                    f"autoregressive head: discrete actions must be integer category indices in [0, n) with "
                    f"n = discrete_nvec = {self.config.discrete_nvec}"
                )
            return
        if not bool(torch.isfinite(actions).all()):
            raise ValueError("autoregressive head: prepare() got non-finite actions")
        if self.config.binning == "quantile":
            bins = self.config.bins
            ordered = actions.to(self.edges).sort(dim=0).values  # (N, A)
            rows = torch.round(torch.arange(1, bins, device=ordered.device) / bins * (len(ordered) - 1)).long()
            interior = ordered[rows].clamp(-1.0, 1.0).T  # (A, bins - 1)
            self.edges[:, 1:-1] = interior
            self.bin_values.copy_(_bin_means(actions.to(self.edges).T.contiguous(), interior.contiguous(),
                                             _centres(self.edges)))
            self.prepared.fill_(True)
            self._edges_ready = True

    def _tokens(self, action: Tensor) -> Tensor:
        """Token index within its group of dimensions (B, N) for action (B, Ta, A), N = Ta * A / dims_per_token."""
        if self.discrete:
            index = rearrange(action.round().long(), "b t a -> b (t a)")
        else:
            values = rearrange(action, "b t a -> a (b t)").contiguous()
            interior = self.edges[:, 1:-1].contiguous()
            index = torch.searchsorted(interior, values, right=True)  # (A, B * Ta)
            index = rearrange(index, "a (b t) -> b (t a)", b=action.shape[0])
        if self.groups == self.action_dim:
            return index
        joint = rearrange(index * self.radix.repeat(self.action_horizon), "b (n g) -> b n g", g=self.config.dims_per_token)
        return joint.sum(-1)

    def _values(self, tokens: Tensor) -> Tensor:
        """Action chunk (B, Ta, A) for tokens (B, N): `bin_values`, or the indices in discrete mode."""
        if self.groups != self.action_dim:  # each joint token back to one index per dimension
            tokens = rearrange(tokens.repeat_interleave(self.config.dims_per_token, dim=1), "b (t a) -> b t a", a=self.action_dim)
            tokens = rearrange(tokens // self.radix % self.dim_sizes, "b t a -> b (t a)")
        chunk = rearrange(tokens, "b (t a) -> b t a", a=self.action_dim)
        if self.discrete:
            return chunk.to(self.position.dtype)
        dims = torch.arange(self.action_dim, device=tokens.device) * self.config.bins
        return self.bin_values.reshape(-1)[chunk + dims]

    # Teacher-forced pass ---------------------------------------------------------------------

    def _logits(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Logits (B, N, K) of every token given features (B, F) and the true tokens (B, N)."""
        if self.by_step:
            return self._step_logits(features, tokens)
        previous = self.embed(tokens[:, :-1] + self.token_offset[:-1])  # (B, N - 1, D)
        x = torch.cat([self.prefix(features).unsqueeze(1), previous], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x)) + self.logit_mask

    def _step_logits(self, features: Tensor, tokens: Tensor) -> Tensor:
        """The "step" layout's `_logits`: the transformer over the Ta steps, then the readout of each step's tokens.

        Position t sees the features and the embedded tokens of steps 0..t-1 (summed per step); its output h_t
        gives token j of step t the logits readout(relu(hidden(norm(h_t) + r_j + sum_{i<j} e_i))), with r_j the
        token's place in the step and e_i the readout's embeddings of the step's earlier tokens.
        """
        ids = rearrange(tokens, "b (t g) -> b t g", g=self.groups) + self.group_offset  # (B, Ta, G)
        previous = self.embed(ids[:, :-1]).sum(2)  # (B, Ta - 1, D): each step's tokens, the next position's input
        x = torch.cat([self.prefix(features).unsqueeze(1), previous], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        within = self.token_position.expand(*ids.shape, -1)  # (B, Ta, G, D), plus the tokens before each in its step:
        if self.groups > 1:
            earlier = self.token_embed(ids[:, :, :-1]).cumsum(2)  # (B, Ta, G - 1, D)
            within = within + torch.cat([torch.zeros_like(earlier[:, :, :1]), earlier], dim=2)
        logits = rearrange(self._readout(self.norm(x).unsqueeze(2) + within), "b t g k -> b (t g) k")
        return logits + self.logit_mask if self.masked else logits

    def _readout(self, x: Tensor) -> Tensor:
        """The "step" layout's readout: logits (..., K) of one token from its input (..., D)."""
        return self.readout(F.relu(self.readout_hidden(x)))

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        if not self._edges_ready:
            raise RuntimeError("autoregressive head: binning='quantile' needs head.prepare(actions) before training")
        tokens = self._tokens(action)
        logits = self._logits(features, tokens)
        entries = step_mask_to_entries(mask, self.groups)
        if self.by_step:  # (B * N, K) rows: a third of the time of the (B, K, N) layout, which "entry" keeps bit for bit
            cross_entropy = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view_as(tokens)
        else:
            cross_entropy = F.cross_entropy(rearrange(logits, "b n k -> b k n"), tokens, reduction="none")  # (B, N)
        loss = weighted_mean(cross_entropy, entries, weight)
        accuracy = masked_mean((logits.argmax(-1) == tokens).to(logits.dtype), entries)
        return loss, {"cross_entropy": loss.detach(), "token_accuracy": accuracy.detach()}

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        self._check_action(features, action)
        tokens = self._tokens(action)
        log_probs = F.log_softmax(self._logits(features, tokens), dim=-1)
        return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)

    # Token-by-token decoding -----------------------------------------------------------------

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {"uniform": ((self.num_tokens, self.logit_mask.shape[1]), "uniform")}

    def _decode(self, features: Tensor, uniform: Tensor | None) -> Tensor:
        """Tokens (B, N) decoded one at a time: drawn with uniforms (B, N, K), or greedily when None."""
        self._check_features(features)
        if uniform is not None:  # Gumbel-max: argmax(logits + gumbel) is a draw from softmax(logits)
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        if self.by_step:
            return self._decode_steps(features, gumbel if uniform is not None else None)
        caches: list[tuple[Tensor, Tensor] | None] = [None] * len(self.blocks)  # keys and values per block
        tokens = []
        x = self.prefix(features) + self.position[0]  # (B, D)
        for p in range(self.num_tokens):
            for i, block in enumerate(self.blocks):
                x, caches[i] = block.step(x, caches[i])
            logits = self.readout(self.norm(x)) + self.logit_mask[p]  # (B, K)
            token = logits.argmax(-1) if uniform is None else (logits + gumbel[:, p]).argmax(-1)
            tokens.append(token)
            if p + 1 < self.num_tokens:
                x = self.embed(token + self.token_offset[p]) + self.position[p + 1]
        return torch.stack(tokens, dim=1)

    def _decode_steps(self, features: Tensor, gumbel: Tensor | None) -> Tensor:
        """The "step" layout's `_decode`: one transformer position (cached) per step, then its tokens in turn."""
        caches: list[tuple[Tensor, Tensor] | None] = [None] * len(self.blocks)
        tokens = []
        positions, places = self.position.unbind(0), self.token_position.unbind(0)  # rows split once, not per token
        noise = gumbel.unbind(1) if gumbel is not None else None
        x = self.prefix(features) + positions[0]  # (B, D)
        for t in range(self.action_horizon):
            for i, block in enumerate(self.blocks):
                x, caches[i] = block.step(x, caches[i])
            hidden = self.norm(x)  # (B, D), plus the step's tokens so far
            step_input = None
            for j in range(self.groups):
                p = t * self.groups + j
                logits = self._readout(hidden + places[j])  # (B, K)
                if self.masked:
                    logits = logits + self.logit_mask[p]
                token = logits.argmax(-1) if noise is None else (logits + noise[p]).argmax(-1)
                tokens.append(token)
                ids = token + self.offsets[j] if self.offsets[j] else token
                if j + 1 < self.groups:
                    hidden = hidden + self.token_embed(ids)
                step_input = self.embed(ids) if step_input is None else step_input + self.embed(ids)
            if t + 1 < self.action_horizon:
                x = step_input + positions[t + 1]
        return torch.stack(tokens, dim=1)

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """Tokens drawn with noise["uniform"] (B, N, K), one uniform per token and category, as bin values."""
        self._check_noise(features, noise)
        return self._values(self._decode(features, noise["uniform"]))

    @torch.no_grad()
    def mode(self, features: Tensor) -> Tensor:
        return self._values(self._decode(features, None))


def _centres(edges: Tensor) -> Tensor:
    """Bin centres (A, bins) of edges (A, bins + 1)."""
    return 0.5 * (edges[:, :-1] + edges[:, 1:])


def _bin_means(values: Tensor, interior: Tensor, fallback: Tensor) -> Tensor:
    """Mean of the values (A, N) in each bin (A, bins) of the interior edges (A, bins - 1), binned as
    `AutoregressiveHead._tokens` bins them; ``fallback`` where a bin holds none."""
    index = torch.searchsorted(interior, values, right=True)  # (A, N)
    sums = torch.zeros_like(fallback).scatter_add_(1, index, values)
    counts = torch.zeros_like(fallback).scatter_add_(1, index, torch.ones_like(values))
    return torch.where(counts > 0, sums / counts.clamp(min=1), fallback)


def _read_prepared_flag(module: nn.Module, incompatible_keys: object) -> None:
    """After load_state_dict: quantile edges that were saved prepared count as prepared."""
    if isinstance(module, AutoregressiveHead) and not module.discrete:
        module._edges_ready = bool(module.prepared)
