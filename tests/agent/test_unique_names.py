"""Every named list of the config refuses duplicates the same way, naming each duplicate once."""

from __future__ import annotations

import pytest

from agent.unique_names import require_unique


def test_unique_names_pass() -> None:
    require_unique(["a", "b"], "camera names")


def test_every_duplicate_is_named_once_sorted() -> None:
    with pytest.raises(ValueError, match=r"^duplicate user names \['a', 'b'\]$"):
        require_unique(["b", "a", "b", "a", "a", "c"], "user names")
