"""``python -m lmcore {train, sample, zoo}``: see :mod:`lmcore.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
