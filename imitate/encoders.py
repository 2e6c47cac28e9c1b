"""Observation encoders: observations with history -> one feature vector per sample.

    obs: {key: (B, To, *shape)}  --flatten and concatenate-->  (B, To * sum(prod(shape)))  --MLP-->  (B, F)

`LowDimEncoder` (policies without images) is an MLP over every key's normalized history, concatenated
in a fixed key order. `ImageEncoder` (a policy with camera keys) first turns each camera's uint8 frames
into features with an image trunk in plain torch (`ConvTrunk`: DrQ's four convolutions, or
`ResNet18Trunk`: ResNet-18 with GroupNorm, torchvision's parameter names) and a pooling
(`SpatialSoftmax` keypoints or flatten), then runs the same MLP over those and the low-dim keys.
`make_encoder` picks one from a `imitate.spec.PolicySpec`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from imitate.augment import ImageAugment
from imitate.errors import ConfigError, ImitateError
from imitate.settings import EncoderConfig


class LowDimEncoder(nn.Module):
    """MLP over the concatenated low-dim observation keys and their history.

    Args:
        obs_shapes: key -> per-step shape; the keys' order here is the concatenation order.
        obs_horizon: To.
        config: `EncoderConfig`.
    """

    def __init__(self, obs_shapes: Mapping[str, Sequence[int]], obs_horizon: int, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        self.obs_keys = list(obs_shapes)
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.obs_horizon = obs_horizon
        in_dim = obs_horizon * sum(math.prod(s) for s in self.obs_shapes.values())
        layers: list[nn.Module] = []
        for width in self.config.hidden_dims:
            layers += [nn.Linear(in_dim, width), nn.Mish()]
            in_dim = width
        layers.append(nn.Linear(in_dim, self.config.feature_dim))
        if self.config.layer_norm:
            layers.append(nn.LayerNorm(self.config.feature_dim))
        self.net = nn.Sequential(*layers)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs {key: (B, To, *shape)} normalized -> features (B, F)."""
        parts = [obs[k].reshape(obs[k].shape[0], -1) for k in self.obs_keys]
        return self.net(torch.cat(parts, dim=-1))


# -- camera images ----------------------------------------------------------------------------------------

_DOT = "%2E"   # a key's dots in module names (torch separates module names with dots)

#: torchvision's ImageNet statistics; the resnet18 trunk standardizes its [0, 1] input with them, so that
#: a user's torchvision weights see what they were trained on (a fixed affine map when trained from scratch).
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm in place of BatchNorm (Diffusion Policy's choice: statistics per sample, which EMA
    weights and small batches keep valid): groups of 16 channels."""
    return nn.GroupNorm(max(1, channels // 16), channels)


class _BasicBlock(nn.Module):
    """torchvision's BasicBlock layout (conv1, bn1, conv2, bn2, downsample.0/1), GroupNorm for BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _group_norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _group_norm(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _group_norm(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its pooling and classifier: (N, C, H, W) in [0, 1] -> (N, 512, H/32, W/32).

    Parameter names are torchvision's ``resnet18`` ones (conv1, bn1, layer1.0.conv1, ...), so that its
    state dict loads with `load_resnet18_weights`; the bn* modules are GroupNorm (weight and bias only).
    """

    out_channels = 512

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = _group_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, cout in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        mean = torch.tensor(_IMAGENET_MEAN if in_channels == 3 else (0.5,)).view(1, -1, 1, 1)
        std = torch.tensor(_IMAGENET_STD if in_channels == 3 else (0.25,)).view(1, -1, 1, 1)
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ConvTrunk(nn.Module):
    """DrQ's small encoder: four 3x3 convolutions (stride 2, then 1, 1, 1) with ReLU.
    (N, C, H, W) in [0, 1] -> (N, channels, (H-1)//2 - 5, ...)."""

    def __init__(self, in_channels: int = 3, channels: int = 32):
        super().__init__()
        self.out_channels = channels
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3, 2), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, 1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, 1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x - 0.5)


class SpatialSoftmax(nn.Module):
    """A linear map of each cell's C channels to K keypoint scores (a 1x1 convolution), a softmax over each
    keypoint's cells, and each keypoint's expected (x, y) in [-1, 1]: (N, C, h, w) -> (N, 2K)."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.keypoints = nn.Linear(in_channels, num_keypoints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        scores = self.keypoints(x.permute(0, 2, 3, 1).reshape(n, h * w, c))       # (N, h*w, K)
        attention = torch.softmax(scores, dim=1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid = torch.stack([xs.repeat(h), ys.repeat_interleave(w)], dim=-1)     # (h*w, 2): x, y of each cell
        return (attention.transpose(1, 2) @ grid).reshape(n, -1)                # (N, K, 2) -> (N, 2K)


class CameraEncoder(nn.Module):
    """One trunk and its pooling: frames (N, C, S, S) in [0, 1] -> features (N, image_feature_dim)."""

    def __init__(self, channels: int, size: int, settings: Mapping, where: str):
        super().__init__()
        kind = settings["image_encoder"]
        if kind == "resnet18":
            self.trunk: nn.Module = ResNet18Trunk(channels)
        else:
            self.trunk = ConvTrunk(channels, settings["conv_channels"])
        try:
            with torch.no_grad():
                _, c, h, w = self.trunk(torch.zeros(1, channels, size, size)).shape
        except RuntimeError:
            raise ConfigError(f"{where}: a {size}x{size} crop is too small for the {kind} trunk (the conv trunk "
                              f"needs at least 17 pixels, resnet18 32); raise crop_size or the image size") from None
        if settings["image_pool"] == "spatial_softmax":
            self.pool: nn.Module = SpatialSoftmax(c, settings["num_keypoints"])
            pooled = 2 * settings["num_keypoints"]
        elif kind == "resnet18":
            raise ConfigError(f"{where}: image_pool flatten is for the conv trunk; resnet18 pools by spatial_softmax")
        else:
            self.pool, pooled = nn.Flatten(), c * h * w
        self.proj = nn.Linear(pooled, settings["image_feature_dim"])
        self.feature_dim = settings["image_feature_dim"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: the frames' own layout, and a faster convolution (forward and backward) on CPUs
        return self.proj(self.pool(self.trunk(x.contiguous(memory_format=torch.channels_last))))


def resolve_image_encoder(kind: str) -> str:
    """``auto`` outside the trainer (which chooses by device and --sizing) is the CPU choice, conv."""
    return "conv" if kind == "auto" else kind


class ImageEncoder(nn.Module):
    """Encoder of a policy with camera images (uint8 (H, W, C) keys) and optionally low-dim keys.

        image key k: uint8 (B, To, H, W, C) --ImageAugment--> (B*To, C, S, S) --CameraEncoder--> (B, To*F_k)
        low-dim key: normalized (B, To, *shape) --flatten--> (B, To*prod(shape))
        all keys, in the spec's order --concatenate--> MLP (hidden_dims -> feature_dim, LayerNorm) --> (B, F)

    One `CameraEncoder` per camera under ``cameras.<key>`` (``share_image_encoder``: one, ``cameras.shared``,
    for every camera, which then must have one shape and the same settings). Per-camera settings come
    from `EncoderConfig.for_key`.

    Args:
        obs_shapes: key -> per-step shape; the order here is the concatenation order.
        image_keys: the keys of ``obs_shapes`` that hold camera images.
        obs_horizon: To.
        config: `EncoderConfig`.
    """

    def __init__(self, obs_shapes: Mapping[str, Sequence[int]], image_keys: Sequence[str], obs_horizon: int,
                 config: EncoderConfig | None = None):
        super().__init__()
        config = config or EncoderConfig()
        unknown = sorted(set(config.keys) - set(image_keys))
        if unknown:
            raise ConfigError(f"encoder.keys names {unknown}, which are not image keys of this policy "
                              f"(its image keys: {list(image_keys)})")
        settings = {k: config.for_key(k) for k in image_keys}
        for s in settings.values():
            s["image_encoder"] = resolve_image_encoder(s["image_encoder"])
        self.config = config
        self.obs_keys = list(obs_shapes)
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.image_keys = [k for k in self.obs_keys if k in set(image_keys)]
        self.obs_horizon = obs_horizon
        self.settings = settings
        self.augment = nn.ModuleDict({_name(k): ImageAugment(*self.obs_shapes[k][:2], settings[k]["crop_size"],
                                                             settings[k]["random_shift"], settings[k]["color_jitter"])
                                      for k in self.image_keys})
        sizes = {k: self.augment[_name(k)].size for k in self.image_keys}
        if config.share_image_encoder:
            first = self.image_keys[0]
            differ = [k for k in self.image_keys if (self.obs_shapes[k], settings[k]) != (self.obs_shapes[first],
                                                                                           settings[first])]
            if differ:
                raise ConfigError(f"encoder.share_image_encoder: one trunk for every camera needs one image shape and "
                                  f"the same settings; {differ} differ from {first!r} "
                                  f"({self.obs_shapes[first]}, {settings[first]})")
            self.cameras = nn.ModuleDict({"shared": CameraEncoder(self.obs_shapes[first][2], sizes[first],
                                                                  settings[first], "encoder")})
        else:
            self.cameras = nn.ModuleDict({_name(k): CameraEncoder(self.obs_shapes[k][2], sizes[k], settings[k],
                                                                  f"encoder (camera {k!r})") for k in self.image_keys})
        widths = {k: self._camera(k).feature_dim if k in self.image_keys else math.prod(self.obs_shapes[k])
                  for k in self.obs_keys}
        in_dim = obs_horizon * sum(widths.values())
        layers: list[nn.Module] = []
        for width in config.hidden_dims:
            layers += [nn.Linear(in_dim, width), nn.Mish()]
            in_dim = width
        layers.append(nn.Linear(in_dim, config.feature_dim))
        if config.layer_norm:
            layers.append(nn.LayerNorm(config.feature_dim))
        self.net = nn.Sequential(*layers)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _camera(self, key: str) -> CameraEncoder:
        return self.cameras["shared" if self.config.share_image_encoder else _name(key)]

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs {key: (B, To, *shape)}: images as uint8 (B, To, H, W, C), low-dim keys normalized -> (B, F)."""
        parts = {}
        frames = {k: self.augment[_name(k)](obs[k]) for k in self.image_keys}   # (B, To, C, S, S)
        if self.config.share_image_encoder:   # one trunk call for every camera
            stacked = torch.cat([f.flatten(0, 1) for f in frames.values()])
            chunks = self.cameras["shared"](stacked).split([f.shape[0] * f.shape[1] for f in frames.values()])
            for k, f, y in zip(frames, frames.values(), chunks):
                parts[k] = y.reshape(f.shape[0], -1)
        else:
            for k, f in frames.items():
                parts[k] = self._camera(k)(f.flatten(0, 1)).reshape(f.shape[0], -1)
        for k in self.obs_keys:
            if k not in parts:
                parts[k] = obs[k].reshape(obs[k].shape[0], -1)
        return self.net(torch.cat([parts[k] for k in self.obs_keys], dim=-1))

    def load_pretrained(self, where: str = "encoder") -> list[str]:
        """Load every camera's ``weights`` file (resnet18 trunks); returns the files loaded."""
        loaded = []
        cameras = {"shared": self.image_keys[0]} if self.config.share_image_encoder else \
            {_name(k): k for k in self.image_keys}
        for name, key in cameras.items():
            path = self.settings[key]["weights"]
            if not path:
                continue
            if self.settings[key]["image_encoder"] != "resnet18":
                raise ConfigError(f"{where}: weights {path} are torchvision resnet18 weights, but camera {key!r} "
                                  f"uses the {self.settings[key]['image_encoder']} trunk (set image_encoder=resnet18)")
            load_resnet18_weights(self.cameras[name].trunk, path)
            loaded.append(path)
        return loaded


def _name(key: str) -> str:
    return key.replace(".", _DOT)


#: entries of a torchvision resnet18 state dict that have no counterpart here, and why
_IGNORED = {
    "running_mean": "BatchNorm's running statistics: GroupNorm normalizes by each sample's own statistics",
    "running_var": "BatchNorm's running statistics: GroupNorm normalizes by each sample's own statistics",
    "num_batches_tracked": "BatchNorm's counter: GroupNorm keeps none",
}


def load_resnet18_weights(trunk: ResNet18Trunk, path: str | Path) -> dict[str, list[str]]:
    """Copy a torchvision ``resnet18`` state dict saved as safetensors into ``trunk``.

    BatchNorm's ``running_mean``, ``running_var`` and ``num_batches_tracked`` are not used (the trunk's
    GroupNorm normalizes each sample by its own statistics; their weight and bias are loaded), nor is
    ``fc`` (the ImageNet classifier; a spatial softmax and a linear layer take its place). Only
    safetensors files are read, never a pickle. Returns {"loaded": [...], "ignored": [...]}.

    Raises:
        ImitateError: naming the file and the key, for a missing, unexpected or mis-shaped entry, or a
            file that is not safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ImitateError(f"encoder.weights {path}: a .safetensors file is expected (pickled .pth/.pt files are "
                           f"never read; convert with safetensors.torch.save_file(model.state_dict(), ...))")
    if not path.is_file():
        raise ImitateError(f"encoder.weights {path}: no such file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ImitateError(f"encoder.weights {path}: not a readable safetensors file ({e})") from None
    ignored = sorted(k for k in tensors if k.startswith("fc.") or k.rsplit(".", 1)[-1] in _IGNORED)
    given = {k: v for k, v in tensors.items() if k not in set(ignored)}
    own = trunk.state_dict()
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    if missing or unexpected:
        raise ImitateError(f"encoder.weights {path}: not torchvision resnet18 weights: "
                           + "; ".join(filter(None, [missing and f"missing {missing[:6]}" + (" ..." if len(missing) > 6 else ""),
                                                     unexpected and f"unexpected {unexpected[:6]}"
                                                     + (" ..." if len(unexpected) > 6 else "")])))
    for k, v in given.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ImitateError(f"encoder.weights {path}: {k} has shape {tuple(v.shape)}, the trunk needs "
                               f"{tuple(own[k].shape)}" + (" (the camera's channel count differs)" if k == "conv1.weight"
                                                           else ""))
    trunk.load_state_dict({k: v.to(own[k].dtype) for k, v in given.items()})
    return {"loaded": sorted(given), "ignored": ignored}


def make_encoder(spec, config: EncoderConfig) -> nn.Module:
    """The encoder of a `imitate.spec.PolicySpec`: `LowDimEncoder` without image keys (its parameter names
    unchanged), `ImageEncoder` with them."""
    shapes = {k: o.shape for k, o in spec.obs.items()}
    if not spec.image_keys:
        return LowDimEncoder(shapes, spec.obs_horizon, config)
    return ImageEncoder(shapes, spec.image_keys, spec.obs_horizon, config)
