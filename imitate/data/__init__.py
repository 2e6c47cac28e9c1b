"""Demonstration data: files in robomimic's layout, episode stores, the windowed sampler.

The normalizer (`imitate.data.normalizer`) needs torch and is imported from there, so that reading
data stays light.
"""
from imitate.data.episode import Episode
from imitate.data.hdf5 import make_env_args, write_demo_file
from imitate.data.reader import load_demo_file
from imitate.data.sampler import Batch, WindowSampler
from imitate.data.scan import DemoFileLayout, scan_demo_file
from imitate.data.store import EpisodeStore, LazyEpisodeStore

__all__ = ["Batch", "DemoFileLayout", "Episode", "EpisodeStore", "LazyEpisodeStore", "WindowSampler",
           "load_demo_file", "make_env_args", "scan_demo_file", "write_demo_file"]
