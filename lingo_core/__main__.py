"""``python -m lingo_core ...``: see :mod:`lingo_core.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
