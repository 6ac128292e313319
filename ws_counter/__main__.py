"""``python -m ws_counter``: the ``ws-counter`` command."""

from ws_counter.tools.cli import main

# Guarded: load-generator processes are spawned and import this module again.
if __name__ == "__main__":
    raise SystemExit(main())
