"""Entry point for `python3 xtask …` (a directory run as a script) and `python3 -m xtask`."""

import sys
from pathlib import Path

if sys.version_info < (3, 11):  # noqa: UP036 (this check is for older interpreters)
    sys.exit("xtask needs Python >= 3.11 (it reads pyproject.toml with tomllib)")

if not __package__:
    # Run as `python3 xtask`: sys.path[0] is this directory; make its parent the import root
    # so the modules are imported as the package `xtask` (and cannot shadow anything).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from xtask.cli import main

sys.exit(main())
