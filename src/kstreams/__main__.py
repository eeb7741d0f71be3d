"""``python -m kstreams run module:engine``: see :mod:`kstreams.cli`."""

from kstreams.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
