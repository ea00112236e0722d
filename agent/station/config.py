"""The `station` config section: where the technician's station listens, who may log in, how long sessions last.

Users come from the config (`station.users`) and from `$CREDENTIALS_DIRECTORY/station.users` (systemd
`LoadCredential=`), so password hashes need not sit in the YAML file. Only argon2 hashes are accepted: a plain
password pasted into `password_hash` is an error that names the user (never the value).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.station.hmi_tokens import TOKEN_HINT
from agent.unique_names import require_unique

Role = Literal["viewer", "technician"]
ROLES: tuple[Role, ...] = ("viewer", "technician")
USERS_CREDENTIAL_FILE = "station.users"
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # listening everywhere: others use this machine's name
_TOKEN_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
HASH_HINT = ("create one with: python -c \"import argon2, getpass; "
             "print(argon2.PasswordHasher().hash(getpass.getpass()))\"")


def check_user_name(name: str) -> str:
    if not _USER_NAME.match(name):
        raise ValueError(f"user name {name!r} must be 1-64 letters, digits, '_', '.', '@', '-' "
                         "(starting with a letter or digit)")
    return name


def check_argon2_hash(user: str, password_hash: str) -> None:
    """Raise naming `user` (never echoing the value: it may be a plain password) unless it is an argon2 hash."""
    try:
        extract_parameters(password_hash)
    except (InvalidHashError, ValueError):
        raise ValueError(f"user {user!r}: password_hash is not an argon2 hash ($argon2id$...); {HASH_HINT}") from None


def _argon2_of_this_user(value: SecretStr, info: ValidationInfo) -> SecretStr:
    check_argon2_hash(info.data.get("name", "?"), value.get_secret_value())  # `name` is declared first
    return value


# The field types every login list shares (station users, OPC UA users, HMI tokens, certificate users).
UserName = Annotated[str, AfterValidator(check_user_name)]
Argon2Hash = Annotated[SecretStr, AfterValidator(_argon2_of_this_user)]


class StationUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName = Field(description="Login name (1-64 letters, digits, '_', '.', '@', '-')")
    role: Role = Field(default="viewer", description="viewer: live view only; technician: everything")
    password_hash: Argon2Hash = Field(description="argon2 hash of the password ($argon2id$...), never the password")


class HmiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName = Field(description="Which HMI holds the token (1-64 letters, digits, '_', '.', '@', '-')")
    token_hash: SecretStr = Field(description="sha256:<64 hex> of the token, never the token itself")

    @field_validator("token_hash")
    @classmethod
    def _sha256_only(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if not _TOKEN_HASH.match(value.get_secret_value()):  # never echo the value: it may be the token itself
            raise ValueError(f"HMI token {info.data.get('name', '?')!r}: token_hash is not sha256:<64 hex>; "
                             f"{TOKEN_HINT}")
        return value


class StationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(default=True, description="Serve the technician's station (live view, review, recalibration)")
    host: str = Field(default="127.0.0.1", min_length=1, description="Bind address (keep it loopback unless firewalled "
                      "or served with TLS)")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port, for tests)")
    tls_cert_file: Path | None = Field(default=None, description="TLS certificate chain (PEM); with tls_key_file the "
                                       "station serves HTTPS and marks its cookie Secure")
    tls_key_file: Path | None = Field(default=None, description="TLS private key (PEM), e.g. a file in "
                                      "$CREDENTIALS_DIRECTORY")
    users: list[StationUser] = Field(
        default=[],
        description=f"Who may log in: name, role (viewer/technician), argon2 password_hash. More users may come from "
        f"$CREDENTIALS_DIRECTORY/{USERS_CREDENTIAL_FILE}: one 'name:role:argon2-hash' per line, '#' comments and blank "
        "lines ignored; a name may not appear in both places",
    )
    session_hours: float = Field(default=8.0, gt=0, le=168, description="A login is valid for this long (one shift)")
    login_attempts: int = Field(default=5, ge=1, le=1000, description="Failed logins allowed per client address and "
                                "per user name within login_window_s; more are refused (HTTP 429, Retry-After)")
    login_window_s: float = Field(default=300.0, gt=0, le=86400, description="Window of the login rate limit")
    recent_frames: int = Field(default=8, ge=0, le=100, description="fail/uncertain frames kept per camera for the "
                               "live page (raw frames are held until a browser asks for them)")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="Base URL an HMI on another machine reaches the station at (e.g. https://box1.plant:8443), used "
        "for results' image_url; null: derived from tls, host (this machine's name when host is 0.0.0.0 or ::) and "
        "port")
    hmi_tokens: list[HmiToken] = Field(
        default=[], description="Read-only bearer tokens (name, token_hash) for HMIs that fetch result pictures "
        "(GET /api/pictures/...) without a login; nothing else accepts them")
    _file_users: list[StationUser] = PrivateAttr(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[StationUser]) -> list[StationUser]:
        require_unique([u.name for u in users], "user names")
        return users

    @field_validator("hmi_tokens")
    @classmethod
    def _unique_tokens(cls, tokens: list[HmiToken]) -> list[HmiToken]:
        require_unique([t.name for t in tokens], "HMI token names")
        return tokens

    @model_validator(mode="after")
    def _tls_pair_and_credential_users(self) -> StationConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        file = Path(directory) / USERS_CREDENTIAL_FILE if directory else None
        self._file_users = read_users_file(file) if file is not None and file.is_file() else []
        both = sorted({u.name for u in self.users} & {u.name for u in self._file_users})
        if both:
            raise ValueError(f"users {both} are defined both in station.users and in {file}")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def base_url(self, port: int) -> str:
        """Where others reach the station (no trailing slash): `public_url`, else derived from the bound `port`."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        host = socket.getfqdn() if self.host in _ANY_ADDRESS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def accounts(self) -> dict[str, StationUser]:
        """Every user who may log in, by name: the config's and the credential file's."""
        return {u.name: u for u in [*self.users, *self._file_users]}


def read_users_file(path: Path) -> list[StationUser]:
    """Parse a `name:role:argon2-hash` per line file; errors name the file, the line number and the user (a line
    that is not in that shape is never echoed: it may be a password)."""
    users: list[StationUser] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, role, password_hash = [*line.split(":", 2), "", ""][:3]
        try:
            if not _USER_NAME.match(name) or not password_hash:
                raise ValueError("expected 'name:role:argon2-hash' with a valid user name")
            if role not in ROLES:
                raise ValueError(f"user {name!r}: role {role!r} must be one of {list(ROLES)}")
            check_argon2_hash(name, password_hash)
        except ValueError as exc:
            raise ValueError(f"{path} line {number}: {exc}") from None
        users.append(StationUser.model_validate({"name": name, "role": role, "password_hash": password_hash}))
    return users
