"""``python -m gperc_core``: the same as the ``gperc`` command (and what ``torchrun -m`` runs)."""

import sys

from gperc_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
