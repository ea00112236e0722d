"""Who may open a session: argon2-checked user names and passwords, known client certificates, anonymous only when
configured. asyncua asks `get_user` on its event loop; a wrong password or unknown certificate is None, which the
client sees as BadUserAccessDenied (and the password is never logged)."""

from __future__ import annotations

from typing import Any

import structlog
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole

from agent.config.opcua import OpcUaConfig
from agent.station.auth import PasswordChecker

log = structlog.get_logger("agent.opcua")


class LineUsers:
    """asyncua's user manager for the `opcua` section. Every accepted client gets the role User (read, browse,
    subscribe, call the methods); nobody is Admin, so no client can add or delete nodes."""

    def __init__(self, config: OpcUaConfig, certificates: dict[bytes, str]) -> None:
        self._allow_anonymous = config.allow_anonymous
        self._plain_allowed = "None" in config.security_policies
        self._passwords = PasswordChecker(config.accounts())  # type: ignore[arg-type]  # name + password_hash
        self._certificates = certificates  # DER -> user name

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        # asyncua lets any client open an unsecured channel (for discovery) and, unless refused here, a session on it
        # even when no None endpoint is offered; without a client certificate the channel is such a one
        if not certificate and not self._plain_allowed:  # asyncua passes b"" for an unsecured channel
            log.warning("opcua login refused: unsecured channel, and security policy None is not enabled")
            return None
        if username is not None:
            return self._password_user(username, password or "")
        # asyncua passes the X.509 token's certificate, or else the secure channel's client certificate (also for
        # an anonymous token), so a certificate that is not a known user's is not a refusal by itself
        name = self._certificates.get(bytes(certificate)) if certificate else None
        if name is not None:
            return User(role=UserRole.User, name=name)
        if self._allow_anonymous:
            return User(role=UserRole.User, name="anonymous")
        log.warning("opcua login refused: no user name, and no known client certificate")
        return None

    def _password_user(self, username: str, password: str) -> User | None:
        user = self._passwords.check(username, password)
        if user is None:
            log.warning("opcua login refused: wrong user name or password", user=username)
            return None
        return User(role=UserRole.User, name=user.name)


async def certificate_users(config: OpcUaConfig) -> dict[bytes, str]:
    """DER -> name of each configured certificate user (a file that cannot be read fails the start, naming it)."""
    known: dict[bytes, str] = {}
    for user in config.certificate_users:
        try:
            cert = await uacrypto.load_certificate(user.certificate_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"opcua certificate user {user.name!r}: cannot read {user.certificate_file}: "
                             f"{exc}") from exc
        known[uacrypto.der_from_x509(cert)] = user.name
    return known
