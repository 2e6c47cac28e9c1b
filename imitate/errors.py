"""Errors that reach users: each message names the file, demo, key or flag at fault."""


class ImitateError(Exception):
    """Base class for errors caused by user input; the CLI prints the message without a traceback."""


class DemoFileError(ImitateError, ValueError):
    """A demonstration file is missing, unreadable or malformed.

    Messages read like ``"demo_7 in lift.hdf5: actions has 212 rows but obs/state has 211"``.
    """


class ConfigError(ImitateError, ValueError):
    """A setting, flag or keyword argument has a value that cannot be used; the message names it."""
