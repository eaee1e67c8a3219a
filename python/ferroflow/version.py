"""ferroflow's version: the compiled core's, which the build sets from the package version."""

from ferroflow._core import __version__

__all__ = ["__version__"]
