"""The installed version, read from the package's metadata."""

from __future__ import annotations

from importlib import metadata

#: The distribution this package is installed from (``pip install kstreams-hex``).
DISTRIBUTION = "kstreams-hex"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
