"""``python -m dockerdrag`` (the ``dockerdrag`` command runs :func:`run` too)."""

from .startup import run_command_and_exit as run

if __name__ == "__main__":
    run()
