"""Security end to end: TLS with client certificates, signed commands through the daemon, no secret in any output,
safetensors only.

Certificates are generated per test with the `openssl` command line (a throwaway CA, a server certificate for
127.0.0.1 and a client certificate); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import torch

from agent.control.commands import command_signature
from agent.detector.base import DetectorError
from agent.store.files import StoreError
from agent.store.model_store import ModelStore
from tests.fixtures.broker import Broker, Subscriber, make_broker
from tests.fixtures.daemon import (
    BASE,
    DaemonProcess,
    NotifyListener,
    publish_command,
    send_command,
    write_config,
)

OPENSSL = shutil.which("openssl")
HMAC_KEY = "hmac-key-" + uuid.uuid4().hex  # unique, so finding it anywhere in a log is never a coincidence
PASSWORD = "mqtt-password-" + uuid.uuid4().hex


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL or "openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Path:
    """ca.crt, server.{crt,key} (SAN IP 127.0.0.1) and client.{crt,key}, all signed by the throwaway CA."""
    directory.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt", cwd=directory)
    return directory


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    certs = make_certs(tmp_path / "certs")
    conf = (f"cafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n"
            "require_certificate true\nuse_identity_as_username true\n")
    broker = make_broker(tmp_path / "broker", extra_conf=conf)
    yield broker, certs
    broker.stop()


def tls_connect(broker: Broker, certs: Path, with_client_cert: bool) -> tuple[bool, str]:
    """(connected, why) for a plain paho client with or without the client certificate."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    certfile, keyfile = (str(certs / "client.crt"), str(certs / "client.key")) if with_client_cert else (None, None)
    client.tls_set(ca_certs=str(certs / "ca.crt"), certfile=certfile, keyfile=keyfile, cert_reqs=ssl.CERT_REQUIRED)
    try:
        client.connect(broker.host, broker.port, keepalive=5)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        return client.is_connected(), "connected" if client.is_connected() else "no CONNACK within 5 s"
    except (OSError, ssl.SSLError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.slow
@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_daemon_connects_with_its_client_certificate_and_a_client_without_one_is_refused(
        tmp_path: Path, tiny_model_dir: Path, tls_broker: tuple[Broker, Path]) -> None:
    broker, certs = tls_broker
    anonymous = tls_connect(broker, certs, with_client_cert=False)
    assert not anonymous[0], f"a client without a certificate got in: {anonymous}"
    assert tls_connect(broker, certs, with_client_cert=True)[0], "the test's own client certificate is refused"
    tls = {"enabled": True, "ca_file": str(certs / "ca.crt"), "cert_file": str(certs / "client.crt"),
           "key_file": str(certs / "client.key")}
    config = write_config(tmp_path, tiny_model_dir, broker, mqtt={"tls": tls})
    status = tls_status_client(broker, certs)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        got = wait_for_state(status, "online", 120)
        assert got == "online", f"daemon did not come online over TLS (got {got}):\n{daemon.log_tail()}"
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        status.loop_stop()
        status.disconnect()
        daemon.ensure_dead()


def tls_status_client(broker: Broker, certs: Path) -> mqtt.Client:
    """A certificate-holding client that records `…/status` payloads in `client.user_data()`."""
    states: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hmi-tls", protocol=mqtt.MQTTv5,
                         userdata=states)
    client.tls_set(ca_certs=str(certs / "ca.crt"), certfile=str(certs / "client.crt"),
                   keyfile=str(certs / "client.key"), cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = lambda c, *_: c.subscribe(f"{BASE}/status", qos=1)
    client.on_message = lambda _c, data, msg: data.append(json.loads(msg.payload)["state"])
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def wait_for_state(client: mqtt.Client, state: str, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    states: list[str] = client.user_data_get()
    while time.monotonic() < deadline and (not states or states[-1] != state):
        time.sleep(0.1)
    return states[-1] if states else None


def signed(topic_verb: str, payload: bytes, ts: float | None = None, command_id: str | None = None,
           key: str = HMAC_KEY) -> dict[str, str]:
    ts_text = f"{time.time() if ts is None else ts:.3f}"
    cid = command_id or uuid.uuid4().hex
    return {"ts": ts_text, "command_id": cid,
            "sig": command_signature(key.encode(), f"{BASE}/cmd/{topic_verb}", ts_text, cid, payload)}


@pytest.mark.slow
def test_signed_commands_end_to_end_and_no_secret_in_any_log_or_check_config(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "commands.hmac_key").write_text(HMAC_KEY + "\n")
    (credentials / "mqtt.password").write_text(PASSWORD + "\n")
    config = write_config(tmp_path, tiny_model_dir, mosquitto, commands={"require_signature": True, "max_skew_s": 30},
                          mqtt={"username": "line1"})
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    check = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", "--config", str(config)],
                           capture_output=True, text=True, timeout=120, env={**_env(), **env})
    notify = NotifyListener()
    status = Subscriber(mosquitto, f"{BASE}/status", client_id="hmi-status")
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env={**env, "EDGE_INSPECT_LOG_LEVEL": "debug"},
                           notify=notify)
    body = b"{}"
    try:
        assert status.wait_for(lambda p: bool(p) and p[-1]["state"] == "online", 120), daemon.log_tail()
        time.sleep(0.5)
        replies = {
            "unsigned": send_command(mosquitto, "status", body),
            "wrong key": send_command(mosquitto, "status", body, user=signed("status", body, key="not-the-key")),
            "stale": send_command(mosquitto, "status", body, user=signed("status", body, ts=time.time() - 120)),
            "tampered payload": send_command(mosquitto, "status", b'{"x": 1}', user=signed("status", body)),
        }
        good = signed("status", body)
        replies["signed"] = send_command(mosquitto, "status", body, user=good)
        replies["replayed"] = send_command(mosquitto, "status", body, user=good)
        retained = publish_command(mosquitto, "status", body, timeout_s=3, user=signed("status", body), retain=True)
        publish_command(mosquitto, "status", b"", timeout_s=0.1, retain=True)  # clear the retained message
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        status.close()
        notify.close()
        daemon.ensure_dead()
    figures = {name: (r["ok"], r.get("error", "")[:60]) for name, r in replies.items()}
    assert replies["signed"]["ok"] and replies["signed"]["model"], f"a correctly signed command failed: {figures}"
    for name, why in [("unsigned", "unsigned"), ("wrong key", "signature"), ("stale", "stale"),
                      ("tampered payload", "signature"), ("replayed", "replayed")]:
        assert not replies[name]["ok"] and why in replies[name]["error"], f"{name} accepted: {figures}"
    assert retained is None, f"a retained command was answered: {retained}"
    assert "retained command ignored" in [r.get("msg") for r in daemon.log_records()], "retained not logged"
    outputs = {"daemon log (debug)": daemon.log.read_text(errors="replace"),
               "check-config": check.stdout + check.stderr}
    assert check.returncode == 0 and "**********" in check.stdout, check.stdout + check.stderr
    for where, text in outputs.items():
        for secret in (HMAC_KEY, PASSWORD):
            assert secret not in text, f"secret {secret[:8]}... appears in the {where} ({len(text)} chars)"
    print(f"\nsigned commands: {figures}; no secret in {sum(len(t) for t in outputs.values())} chars of output")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("EDGE_INSPECT_")}


# ----- only safetensors weights are ever loaded ---------------------------------------------------------------------
def pickle_weights(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(2)}, directory / name)  # a pickle: loading it could run code
    return directory


def test_a_pickle_adapter_is_refused_by_the_detector_and_the_store(tmp_path: Path, tiny_model_dir: Path) -> None:
    from agent.detector.florence2 import Florence2Detector

    adapter = pickle_weights(tmp_path / "adapter", "adapter_model.bin")
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    with pytest.raises(DetectorError, match="safetensors"):
        Florence2Detector(tiny_model_dir, adapter)
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(tiny_model_dir)
    with pytest.raises(StoreError, match=r"\.bin weights are refused"):
        store.add_adapter(adapter)


def test_a_base_model_with_pickle_weights_only_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    from agent.detector.florence2 import Florence2Detector

    base = tmp_path / "pickled-base"
    shutil.copytree(tiny_model_dir, base)
    from safetensors.torch import load_file

    torch.save(load_file(base / "model.safetensors"), base / "pytorch_model.bin")
    (base / "model.safetensors").unlink()
    with pytest.raises(DetectorError):
        Florence2Detector(base)
    with pytest.raises(StoreError, match="refused"):
        ModelStore.in_state_dir(tmp_path / "state").set_base(base)
