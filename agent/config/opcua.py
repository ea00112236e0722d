"""The `opcua` config section: endpoint, namespace, who may log in (argon2 hashes, certificates), security policies.

Users come from the config (`opcua.users`) and from `$CREDENTIALS_DIRECTORY/opcua.users` (systemd
`LoadCredential=`), one `name:argon2-hash` per line. Anonymous access and the unencrypted `None` policy are off
unless named explicitly; a secured policy needs the server's certificate and key.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from agent.station.config import Argon2Hash, UserName

Policy = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
USERS_CREDENTIAL_FILE = "opcua.users"
INSTALL_HINT = "install it with: pip install 'edge-inspect[opcua]' (or: pip install 'asyncua>=1.1')"


class OpcUaUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName = Field(description="Login name (1-64 letters, digits, '_', '.', '@', '-')")
    password_hash: Argon2Hash = Field(description="argon2 hash of the password ($argon2id$...), never the password")


class CertificateUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName = Field(description="Name the client is known by once its certificate is accepted")
    certificate_file: Path = Field(description="The client's X.509 certificate (PEM or DER)")


class OpcUaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(default=False, description="Serve the OPC UA server (needs asyncua: pip install "
                          "'edge-inspect[opcua]')")
    host: str = Field(default="127.0.0.1", min_length=1, description="Bind address (keep it loopback unless the "
                      "line network is firewalled)")
    port: int = Field(default=4840, ge=1, le=65535, description="TCP port (4840 is OPC UA's)")
    namespace_uri: str = Field(default="urn:edge-inspect:machine-vision", min_length=1,
                               description="Namespace of the VisionSystem nodes (node ids are ns=<its index>;s=...)")
    allow_anonymous: bool = Field(default=False, description="Let clients in without a user name or certificate")
    users: list[OpcUaUser] = Field(default=[], description=f"Who may log in with user name and password (argon2 "
                                   f"password_hash). More from $CREDENTIALS_DIRECTORY/{USERS_CREDENTIAL_FILE}: one "
                                   "'name:argon2-hash' per line")
    certificate_users: list[CertificateUser] = Field(default=[], description="Clients that log in with an X.509 "
                                                     "certificate (needs a Basic256Sha256 policy)")
    security_policies: list[Policy] = Field(
        default=["Basic256Sha256_SignAndEncrypt"], min_length=1,
        description="Offered endpoints; 'None' (no signing, no encryption, passwords in clear) only when listed")
    certificate_file: Path | None = Field(default=None, description="The server's X.509 certificate (PEM or DER); "
                                          "needed by the Basic256Sha256 policies")
    private_key_file: Path | None = Field(default=None, description="The server's private key (PEM), e.g. a file "
                                          "in $CREDENTIALS_DIRECTORY")
    _file_users: list[OpcUaUser] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaConfig:
        if not self.enabled:
            return self
        if importlib.util.find_spec("asyncua") is None:
            raise ValueError(f"opcua is enabled but asyncua is not installed; {INSTALL_HINT}")
        secured = any(p != "None" for p in self.security_policies)
        if secured and (self.certificate_file is None or self.private_key_file is None):
            raise ValueError("the Basic256Sha256 policies need certificate_file and private_key_file (or list "
                             "security_policies: ['None'] to serve without encryption)")
        self._file_users = _credential_users()
        names = [u.name for u in [*self.users, *self._file_users]] + [u.name for u in self.certificate_users]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"user names defined twice (users, certificate_users, {USERS_CREDENTIAL_FILE}): {dupes}")
        if not (self.allow_anonymous or names):
            raise ValueError("nobody could log in: add users or certificate_users, or set allow_anonymous: true")
        return self

    def accounts(self) -> dict[str, OpcUaUser]:
        """Every password user, by name: the config's and the credential file's."""
        return {u.name: u for u in [*self.users, *self._file_users]}


def _credential_users() -> list[OpcUaUser]:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    file = Path(directory) / USERS_CREDENTIAL_FILE if directory else None
    return read_users_file(file) if file is not None and file.is_file() else []


def read_users_file(path: Path) -> list[OpcUaUser]:
    """Parse `name:argon2-hash` lines; errors name the file and line, never echo the line (it may be a password)."""
    users: list[OpcUaUser] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, password_hash = line.partition(":")
        try:
            users.append(OpcUaUser.model_validate({"name": name, "password_hash": password_hash}))
        except ValueError:
            raise ValueError(f"{path} line {number}: expected 'name:argon2-hash' with a valid user name") from None
    return users
