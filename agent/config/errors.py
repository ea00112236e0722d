"""Config errors as a user reads them: one `dotted.path: reason (got value)` line per problem, secrets masked."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

SECRET_KEYS = frozenset({"password", "hmac_key", "password_hash", "token_hash"})
SECRET_MASK = "**********"


class ConfigError(ValueError):
    """A config that cannot be loaded; `errors` holds one `path: reason (got value)` line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid config {source}:\n" + "\n".join(f"  {e}" for e in errors))


def format_validation_errors(exc: ValidationError) -> list[str]:
    """One `dotted.path: reason (got value)` line per pydantic error; secrets are never echoed."""
    lines = []
    for err in exc.errors(include_url=False):
        path = dotted_path(err["loc"])
        value = SECRET_MASK if path.rsplit(".", 1)[-1] in SECRET_KEYS else _mask_secrets(err.get("input"))
        reason = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {reason} (got {_short_repr(value)})")
    return lines


def dotted_path(loc: tuple[int | str, ...]) -> str:
    """`mqtt.tls.ca_file`, `cameras.0.name`; a key that is not a plain word is quoted (`mqtt[" ."]`) so that a
    user's typo containing dots or spaces cannot make the path ambiguous."""
    text = ""
    for part in loc:
        plain = isinstance(part, int) or re.fullmatch(r"[A-Za-z0-9_-]+", part) is not None
        text += f".{part}" if plain else f"[{json.dumps(part)}]"
    return text.lstrip(".") or "<root>"


def _mask_secrets(value: Any) -> Any:
    """A copy of `value` with every secret key's value replaced, for error messages about a whole section."""
    if isinstance(value, dict):
        return {k: SECRET_MASK if k in SECRET_KEYS else _mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_secrets(v) for v in value]
    return value


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
