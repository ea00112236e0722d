"""One rule for every named list of the config (cameras, classes, station users, HMI tokens): names are unique.

Its own module because both agent/config/ and agent/station/config.py use it, and agent/config imports the station's
config section: neither can be the other's home without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence


def require_unique(names: Sequence[str], what: str) -> None:
    """Raise ValueError `duplicate {what} [...]` listing every name that occurs more than once, sorted."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} {dupes}")
