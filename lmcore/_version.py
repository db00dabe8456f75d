"""The package version, read from the installed package's metadata (set once, in pyproject.toml)."""
from importlib import metadata

try:
    __version__ = metadata.version("lmcore")
except metadata.PackageNotFoundError:   # imported from a source tree that was never pip-installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
