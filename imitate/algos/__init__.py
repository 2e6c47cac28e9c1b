"""Algorithms built on the BC trainer, the policy heads and the demonstration files.

Each algorithm is one module that reads top to bottom (e.g. `imitate.algos.dagger`); nothing is
imported here, so that importing one algorithm never pulls in another's dependencies.
"""
