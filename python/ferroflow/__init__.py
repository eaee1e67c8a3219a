"""ferroflow: flows and tasks whose results are persisted, cached and fetched fast."""

from ferroflow._core import __version__

__all__ = ["__version__"]
