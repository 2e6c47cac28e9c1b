"""``python -m imitate`` is the ``imitate`` command (so ``torchrun -m imitate ...`` works too)."""
import sys

import imitate


def shadowing_folder() -> str | None:
    """The folder that Python imported as ``imitate`` when it is not the package, else None.

    From a folder that holds the checkout as a subfolder named ``imitate``, ``python -m imitate``
    imports that subfolder as an empty namespace package (no ``__init__.py`` of its own), while an
    editable install still serves ``imitate.cli``: the command would then fail later, deep inside,
    on ``imitate.__version__``."""
    if getattr(imitate, "__file__", None) is not None:
        return None
    return ", ".join(str(p) for p in getattr(imitate, "__path__", [])) or "(unknown)"


def _shadowed_message(folder: str) -> str:
    return (f"imitate: error: Python imported the folder {folder} as 'imitate' instead of the imitate package, "
            "because the current folder comes first on Python's import path and holds a folder of that name "
            "(a checkout of imitate?). Run the command from another folder (for example from inside the "
            "checkout), or use the `imitate` command of the environment where imitate is installed.")


if __name__ == "__main__":
    shadow = shadowing_folder()
    if shadow is not None:
        sys.exit(_shadowed_message(shadow))
    from imitate.cli import main

    sys.exit(main())
