"""Demonstration data: files in robomimic's layout, episode stores, the windowed sampler.

The normalizer (`imitate.data.normalizer`) needs torch and is imported from there, so that reading
data stays light.
"""
from imitate.data.episode import Episode
from imitate.data.hdf5 import DemoFileLayout, make_env_args, scan_demo_file, write_demo_file
from imitate.data.sampler import Batch, WindowSampler
from imitate.data.store import EpisodeStore, LazyEpisodeStore, load_demo_file

__all__ = ["Batch", "DemoFileLayout", "Episode", "EpisodeStore", "LazyEpisodeStore", "WindowSampler",
           "load_demo_file", "make_env_args", "scan_demo_file", "write_demo_file"]
