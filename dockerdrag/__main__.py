"""``python -m dockerdrag`` (the ``dockerdrag`` command runs :func:`run` too)."""

import sys

from .startup import run_command as run

if __name__ == "__main__":
    sys.exit(run())
