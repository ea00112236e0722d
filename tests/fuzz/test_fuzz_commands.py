"""Fuzzing `CommandRouter.handle` with hypothesis: any topic, payload bytes and user properties.

Whatever arrives, `handle` returns a reply (or None for a retained command) and never raises; a refusal's `error`
names what was wrong: the bad field of the payload, the missing/invalid signature property, or the unknown verb.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.control.commands import (
    COMMAND_MODELS,
    CommandRequest,
    CommandRouter,
    HmacAuthenticator,
    command_signature,
)

TOPIC_BASE = "edge-inspect/dev/cmd/"
KEY = b"fuzz-key"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["camera", "part_id", "scope", "reason", "colour", ""]) | st.text(max_size=8)
objects = st.dictionaries(field_names, json_values, max_size=4)
payloads = (
    objects.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
    | st.text(max_size=100).map(str.encode)
)
verbs = st.sampled_from(sorted(COMMAND_MODELS)) | st.text(max_size=12)


def router(authenticator: Any = None) -> CommandRouter:
    r = CommandRouter(lambda *_: None, "edge-inspect/dev/replies", authenticator)
    for verb in COMMAND_MODELS:
        r.register(verb, lambda cmd: {"echo": cmd.model_dump()})
    return r


def expected_field_names(verb: str, payload: bytes) -> set[str] | None:
    """The top-level fields pydantic objects to, when the payload is a JSON object the verb's model rejects."""
    try:
        data = json.loads(payload.decode("utf-8")) if payload.strip(b" \t\r\n") else {}  # JSON whitespace only
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if verb not in COMMAND_MODELS or not isinstance(data, dict):
        return None
    try:
        COMMAND_MODELS[verb].model_validate(data)
    except ValidationError as exc:
        return {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    return set()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(verb=verbs, payload=payloads, retained=st.booleans())
@example(verb="recalibrate", payload=b"\xc2\xa0", retained=False)  # found: a lone NBSP was taken for an empty payload
@example(verb="recalibrate", payload=b"\x0b", retained=False)  # vertical tab: whitespace to Python, not to JSON
@example(verb="status", payload=b" \r\n\t", retained=False)  # JSON whitespace only: means {}
def test_any_payload_gets_a_reply_naming_the_bad_field_and_never_raises(verb: str, payload: bytes,
                                                                        retained: bool) -> None:
    request = CommandRequest(verb=verb, topic=TOPIC_BASE + verb, payload=payload, retained=retained)
    reply = router().handle(request)
    if retained:
        assert reply is None, f"retained {verb!r} must be ignored, got {reply}"
        return
    assert reply is not None and isinstance(reply["ok"], bool) and reply["verb"] == verb, reply
    if verb not in COMMAND_MODELS:
        assert not reply["ok"] and "unknown verb" in reply["error"] and repr(verb) in reply["error"], reply
        return
    bad_fields = expected_field_names(verb, payload)
    if bad_fields is None:  # not UTF-8, not JSON or not an object: the reply says which
        assert not reply["ok"] and any(w in reply["error"] for w in ("UTF-8", "JSON")), (payload, reply)
    elif bad_fields:
        assert not reply["ok"] and all(name in reply["error"] for name in bad_fields), (payload, bad_fields, reply)
    else:
        assert reply["ok"], (payload, reply)


signature_props = st.fixed_dictionaries({}, optional={
    "ts": st.text(max_size=12) | st.floats(allow_nan=True).map(str) | st.integers().map(str),
    "command_id": st.text(max_size=12),
    "sig": st.text(alphabet="0123456789abcdefABCDEF", max_size=64) | st.text(max_size=10),
})


@settings(max_examples=300, deadline=None)
@given(props=signature_props, payload=payloads)
def test_any_signature_properties_are_refused_with_the_reason_unless_correctly_signed(
        props: dict[str, str], payload: bytes) -> None:
    request = CommandRequest(verb="status", topic=TOPIC_BASE + "status", payload=payload, user_properties=props)
    reply = router(HmacAuthenticator(KEY, max_skew_s=30)).handle(request)
    assert reply is not None and not reply["ok"], f"a random signature was accepted: {props} -> {reply}"
    missing = [k for k in ("ts", "command_id", "sig") if not props.get(k)]
    if missing:
        assert "unsigned" in reply["error"] and all(k in reply["error"] for k in missing), reply
    else:
        assert any(w in reply["error"] for w in ("ts", "stale", "signature")), reply


@settings(max_examples=100, deadline=None)
@given(payload=objects.map(lambda d: json.dumps(d).encode()), command_id=st.text(min_size=1, max_size=16))
def test_a_correctly_signed_command_passes_authentication_once(payload: bytes, command_id: str) -> None:
    auth = HmacAuthenticator(KEY, max_skew_s=30)
    ts = f"{time.time():.3f}"
    props = {"ts": ts, "command_id": command_id,
             "sig": command_signature(KEY, TOPIC_BASE + "status", ts, command_id, payload)}
    request = CommandRequest(verb="status", topic=TOPIC_BASE + "status", payload=payload, user_properties=props)
    r = router(auth)
    first, again = r.handle(request), r.handle(request)
    assert first is not None and (first["ok"] or "signature" not in first["error"]), first
    assert again is not None and not again["ok"] and "replayed" in again["error"], again


@given(ts=st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400"]))
def test_a_signed_command_with_a_non_finite_timestamp_is_refused(ts: str) -> None:
    """Found by fuzzing: `ts=nan` compared false against the skew limit, so a signed command never went stale."""
    props = {"ts": ts, "command_id": "c-1", "sig": command_signature(KEY, TOPIC_BASE + "status", ts, "c-1", b"{}")}
    request = CommandRequest(verb="status", topic=TOPIC_BASE + "status", payload=b"{}", user_properties=props)
    reply = router(HmacAuthenticator(KEY, max_skew_s=30)).handle(request)
    assert reply is not None and not reply["ok"] and "ts" in reply["error"], reply
