"""The secured endpoints: Basic256Sha256 Sign&Encrypt with the server's certificate and key, passwords over the
encrypted channel, clients that log in with a known X.509 certificate, and no unencrypted endpoint unless listed."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from asyncua.common.utils import create_nonce
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.config.opcua import OpcUaConfig
from agent.opcua.server import OpcUaServer
from tests.fixtures.broker import free_port

PASSWORD = "encrypted-plc-password"


def make_certificate(folder: Path, name: str, uri: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
    """A self-signed application certificate (PEM) and its key, as an integrator would make with openssl."""
    key = cert_gen.generate_private_key()
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {}, alt_names, [usage])
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    server_cert, server_key = make_certificate(folder, "server", "urn:edge-inspect:line1",
                                               ExtendedKeyUsageOID.SERVER_AUTH)
    plc_cert, plc_key = make_certificate(folder, "plc", "urn:test:plc", ExtendedKeyUsageOID.CLIENT_AUTH)
    other_cert, other_key = make_certificate(folder, "other", "urn:test:other", ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"server_cert": server_cert, "server_key": server_key, "plc_cert": plc_cert, "plc_key": plc_key,
            "other_cert": other_cert, "other_key": other_key}


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Iterator[OpcUaServer]:
    config = OpcUaConfig.model_validate({
        "enabled": True, "port": free_port(), "certificate_file": str(pki["server_cert"]),
        "private_key_file": str(pki["server_key"]),
        "users": [{"name": "scada", "password_hash": PasswordHasher().hash(PASSWORD)}],
        "certificate_users": [{"name": "plc", "certificate_file": str(pki["plc_cert"])}]})
    server = OpcUaServer(config, "line1", {"gate": "trigger"}, lambda cmd: {}, lambda job: job, lambda: [])
    server.start()
    yield server
    server.stop()


async def secured_client(server: OpcUaServer, pki: dict[str, Path], who: str) -> Client:
    client = Client(server.endpoint, timeout=10)
    await client.set_security(SecurityPolicyBasic256Sha256, str(pki[f"{who}_cert"]), str(pki[f"{who}_key"]),
                              server_certificate=str(pki["server_cert"]),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    return client


async def system_state(client: Client) -> Any:
    async with client:
        idx = await client.get_namespace_index("urn:edge-inspect:machine-vision")
        return await client.get_node(ua.NodeId.from_string(f"ns={idx};s=VisionSystem.SystemState")).read_value()


def test_only_the_sign_and_encrypt_endpoint_is_offered_by_default(server: OpcUaServer) -> None:
    async def endpoints() -> list[tuple[str, Any]]:
        client = Client(server.endpoint, timeout=10)
        found = await client.connect_and_get_server_endpoints()
        return [(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in found]

    assert asyncio.run(endpoints()) == [("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)]


async def plain_session(server: OpcUaServer, token: Any) -> None:
    """A session on an unsecured channel, built by hand: asyncua's connect() would already refuse client-side, and
    asyncua's server accepts the channel for discovery (the bypass this guards against)."""
    client = Client(server.endpoint, timeout=10)
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        params = ua.CreateSessionParameters()
        params.ClientNonce, params.EndpointUrl, params.SessionName = create_nonce(32), server.endpoint, "plain"
        params.ClientDescription, params.RequestedSessionTimeout = ua.ApplicationDescription(), 60000
        await client.uaclient.create_session(params)
        activate = ua.ActivateSessionParameters()
        activate.UserIdentityToken, activate.LocaleIds = token, ["en"]
        await client.uaclient.activate_session(activate)
    finally:
        client.disconnect_socket()


def test_a_password_on_an_unsecured_channel_is_refused(server: OpcUaServer) -> None:
    token = ua.UserNameIdentityToken()
    token.UserName, token.Password, token.PolicyId = "scada", PASSWORD.encode(), "username"
    with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
        asyncio.run(plain_session(server, token))


def test_a_user_logs_in_with_a_password_over_the_encrypted_channel(server: OpcUaServer, pki: dict[str, Path]) -> None:
    async def login() -> Any:
        client = await secured_client(server, pki, "other")  # any application certificate carries the channel
        client.set_user("scada")
        client.set_password(PASSWORD)
        return await system_state(client)

    assert asyncio.run(login()) == "Operational"


def test_a_known_client_certificate_logs_in_and_an_unknown_one_is_refused(server: OpcUaServer,
                                                                          pki: dict[str, Path]) -> None:
    async def login(who: str) -> Any:
        client = await secured_client(server, pki, who)
        await client.load_client_certificate(str(pki[f"{who}_cert"]))
        await client.load_private_key(str(pki[f"{who}_key"]))
        return await system_state(client)

    assert asyncio.run(login("plc")) == "Operational"
    with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
        asyncio.run(login("other"))


def test_the_sign_only_policy_takes_a_password_encrypted_by_the_policy(pki: dict[str, Path]) -> None:
    config = OpcUaConfig.model_validate({
        "enabled": True, "port": free_port(), "security_policies": ["Basic256Sha256_Sign"],
        "certificate_file": str(pki["server_cert"]), "private_key_file": str(pki["server_key"]),
        "users": [{"name": "scada", "password_hash": PasswordHasher().hash(PASSWORD)}]})
    server = OpcUaServer(config, "line1", {"gate": "trigger"}, lambda cmd: {}, lambda job: job, lambda: [])
    server.start()
    try:
        async def login(password: str) -> Any:
            client = Client(server.endpoint, timeout=10)
            await client.set_security(SecurityPolicyBasic256Sha256, str(pki["other_cert"]), str(pki["other_key"]),
                                      server_certificate=str(pki["server_cert"]), mode=ua.MessageSecurityMode.Sign)
            client.set_user("scada")
            client.set_password(password)
            return await system_state(client)

        assert asyncio.run(login(PASSWORD)) == "Operational"
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            asyncio.run(login("wrong"))
    finally:
        server.stop()
