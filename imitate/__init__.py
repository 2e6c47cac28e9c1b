"""imitate: imitation learning with expressive policies.

Importing the package is light (no torch): the subpackages import what they need.

    imitate.data        demonstration files (robomimic HDF5), EpisodeStore, WindowSampler, Normalizer
    imitate.envs        tasks shipped with imitate and their scripted experts
    imitate.collect     run an expert and write its demonstrations
    imitate.policy      Policy = normalizer + observation encoder + head
    imitate.train       the one behaviour-cloning trainer
    imitate.evaluate    rollouts: success, return, modes, videos
    imitate.export      export a policy (ONNX, torch.export); `imitate.export.runtime` runs it without torch
    imitate.load_policy load a trained run directory
"""
__version__ = "0.1.0"


def load_policy(run_dir, device="cpu"):
    """The trained policy of a run directory (see `imitate.checkpoint.load_policy`)."""
    from imitate.checkpoint import load_policy as _load

    return _load(run_dir, device)
