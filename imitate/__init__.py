"""imitate: imitation learning with expressive policies.

Importing the package is light (no torch): the subpackages import what they need.

    imitate.data      demonstration files (robomimic HDF5), EpisodeStore, WindowSampler, Normalizer
    imitate.envs      tasks shipped with imitate and their scripted experts
    imitate.collect   run an expert and write its demonstrations
"""
__version__ = "0.1.0"
