"""`…/cmd/{verb}` commands: parse, authenticate, validate, dispatch to the daemon's handlers, reply.

A request is an MQTT v5 message whose payload is a JSON object (empty means `{}`); the reply goes to its Response
Topic (else `…/replies`) with its Correlation Data echoed, as `{"ok": true, "verb", ...}` or
`{"ok": false, "verb", "error": "<reason naming the bad field>"}`. Nothing changes unless validation passed.
Retained commands are never executed (a stale retained `trigger` must not fire on every reconnect).
Handlers run on one worker thread, in arrival order, so a slow `reload` never stalls the MQTT network loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

log = structlog.get_logger(__name__)

PENDING_LIMIT = 64  # requests waiting for the worker; beyond this they are answered "busy"
MAX_REPLAY_SEQS = 1000  # one replay sends at most this many results (bounded work on the commands thread)


class CommandError(Exception):
    """A refusal; its message is the `error` of the reply. Handlers raise it for bad requests (unknown camera...).

    `fields` go into the reply beside `error` (a refused trigger's `status`, `camera`, `part_id`)."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


# ----- per-verb payloads --------------------------------------------------------------------------------------------
class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerCommand(_Command):
    camera: str = Field(min_length=1, description="Camera (in trigger mode) that inspects its next frame")
    part_id: str | None = Field(default=None, max_length=128, description="Echoed in the result's part_id")
    expect: Literal["pass", "fail"] | None = Field(
        default=None, description="What the line knows the part is ('defect' is a synonym of 'fail'); a pass or "
        "uncertain verdict on a 'fail' part is queued for review as a miss (the flagged-miss sampler)")

    @field_validator("expect", mode="before")
    @classmethod
    def _defect_means_fail(cls, expect: Any) -> Any:
        return "fail" if expect == "defect" else expect


class FlagCommand(_Command):
    camera: str = Field(min_length=1, description="Camera that inspected the part")
    part_id: str = Field(min_length=1, max_length=128, description="The part's id, as its trigger gave it")
    reason: str | None = Field(default=None, max_length=500, description="Why the line knows it is bad (e.g. "
                               "'leak test failed'); kept with the learning queue entry")


class ReloadCommand(_Command):
    scope: Literal["all", "model", "config"] = Field(
        default="all", description="What to re-read: all = config file + model store, model = the model store only, "
        "config = the config file only (agent/reload.py)")


class StatusCommand(_Command):
    pass


class RecalibrateCommand(_Command):
    reason: str | None = Field(default=None, max_length=500, description="Why; recorded with the request")


class ReplayCommand(_Command):
    from_seq: int = Field(ge=1, strict=True, description="First seq to send again")
    to_seq: int = Field(ge=1, strict=True, description=f"Last seq to send again (at most {MAX_REPLAY_SEQS} in all)")

    @field_validator("to_seq")
    @classmethod
    def _a_bounded_range(cls, to_seq: int, info: ValidationInfo) -> int:
        from_seq = info.data.get("from_seq")
        if from_seq is None:  # from_seq itself was invalid and is reported on its own
            return to_seq
        if to_seq < from_seq:
            raise ValueError(f"must be >= from_seq ({from_seq})")
        if to_seq - from_seq + 1 > MAX_REPLAY_SEQS:
            raise ValueError(f"the range holds {to_seq - from_seq + 1} seqs; at most {MAX_REPLAY_SEQS} per replay")
        return to_seq


COMMAND_MODELS: dict[str, type[_Command]] = {
    "trigger": TriggerCommand,
    "reload": ReloadCommand,
    "status": StatusCommand,
    "recalibrate": RecalibrateCommand,
    "replay": ReplayCommand,
    "flag": FlagCommand,
}

Handler = Callable[[Any], "dict[str, Any] | None"]
ReplySink = Callable[[str, "dict[str, Any]", "bytes | None"], None]


@dataclass(frozen=True)
class CommandRequest:
    """One received command, detached from paho."""

    verb: str
    topic: str
    payload: bytes
    retained: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: dict[str, str] = field(default_factory=dict)


class Authenticator(Protocol):
    def verify(self, request: CommandRequest) -> None:
        """Raise CommandError when the request is not authentic."""


# ----- authentication ----------------------------------------------------------------------------------------------
def command_signature(key: bytes, topic: str, ts: str, command_id: str, payload: bytes) -> str:
    """Hex HMAC-SHA256 over topic, timestamp, command id and payload (what a signing HMI computes)."""
    message = f"{topic}\n{ts}\n{command_id}\n".encode() + payload
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class HmacAuthenticator:
    """Checks MQTT v5 user properties `ts` (Unix seconds), `command_id` and `sig`; rejects stale and replayed ones."""

    def __init__(self, key: bytes, max_skew_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._max_skew_s = max_skew_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # command_id -> ts, pruned past the skew window

    def verify(self, request: CommandRequest) -> None:
        props = request.user_properties
        missing = [name for name in ("ts", "command_id", "sig") if not props.get(name)]
        if missing:
            raise CommandError(f"unsigned command: user properties {missing} missing (ts, command_id, sig required)")
        ts = self._check_fresh(props["ts"])
        expected = command_signature(self._key, request.topic, props["ts"], props["command_id"], request.payload)
        if not hmac.compare_digest(expected, props["sig"].lower()):
            raise CommandError("bad signature: sig does not match topic, ts, command_id and payload")
        self._check_not_replayed(props["command_id"], ts)

    def _check_fresh(self, raw_ts: str) -> float:
        try:
            ts = float(raw_ts)
        except ValueError:
            raise CommandError(f"ts {raw_ts!r} is not a Unix timestamp in seconds") from None
        if not math.isfinite(ts):  # 'nan' compares false with everything: it would never be stale
            raise CommandError(f"ts {raw_ts!r} is not a finite Unix timestamp in seconds")
        skew = abs(self._clock() - ts)
        if skew > self._max_skew_s:
            raise CommandError(f"stale command: ts is {skew:.1f} s away from now (max {self._max_skew_s:g} s)")
        return ts

    def _check_not_replayed(self, command_id: str, ts: float) -> None:
        horizon = self._clock() - 2 * self._max_skew_s
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if command_id in self._seen:
            raise CommandError(f"replayed command: command_id {command_id!r} was already used")
        self._seen[command_id] = ts


# ----- parsing and validation --------------------------------------------------------------------------------------
JSON_WHITESPACE = " \t\r\n"  # RFC 8259's whitespace; a payload of nothing else means `{}`


def parse_payload(verb: str, payload: bytes, model: type[_Command]) -> _Command:
    """The validated command model, or CommandError naming the bad field."""
    try:
        text = payload.decode("utf-8").strip(JSON_WHITESPACE)  # not str.strip(): a lone NBSP is not "empty"
    except UnicodeDecodeError as exc:
        raise CommandError(f"payload is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise CommandError(f"payload must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CommandError(f"invalid {verb} command: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "<payload>"
        parts.append(f"{path}: {err['msg']} (got {err.get('input')!r})"[:200])
    return "; ".join(parts)


# ----- the router --------------------------------------------------------------------------------------------------
class CommandRouter:
    """Registry of verb handlers plus the worker that runs them and sends replies through `reply`."""

    def __init__(self, reply: ReplySink, default_reply_topic: str, authenticator: Authenticator | None = None) -> None:
        self._reply = reply
        self._default_reply_topic = default_reply_topic
        self._authenticator = authenticator
        self._models: dict[str, type[_Command]] = dict(COMMAND_MODELS)
        self._handlers: dict[str, Handler] = {}
        self._pending: queue.Queue[CommandRequest | None] = queue.Queue(maxsize=PENDING_LIMIT)
        self._worker: threading.Thread | None = None
        self.ignored_retained = 0
        self.rejected = 0
        self.executed = 0

    def register(self, verb: str, handler: Handler, model: type[_Command] | None = None) -> None:
        """Route `verb` to `handler(validated_model) -> extra reply fields | None`; new verbs need their `model`."""
        if model is None and verb not in self._models:
            raise ValueError(f"verb {verb!r} has no payload model; known verbs: {sorted(self._models)}")
        if model is not None:
            self._models[verb] = model
        self._handlers[verb] = handler

    # ----- intake (paho network thread) ------------------------------------------------------------------------
    def submit_mqtt(self, message: Any) -> None:
        """paho `on_message` for `cmd/+`: detach the request and queue it (never blocks the network loop)."""
        verb = message.topic.rsplit("/", 1)[-1]
        self.submit(request_from_mqtt(verb, message))

    def submit(self, request: CommandRequest) -> None:
        try:
            self._pending.put_nowait(request)
        except queue.Full:
            self._send(request, {"ok": False, "verb": request.verb, "status": "busy",
                                 "error": "busy: too many pending commands"})

    # ----- worker ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="commands", daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._worker is not None:
            self._pending.put(None)
            self._worker.join(timeout=timeout_s)

    def _work(self) -> None:
        while (request := self._pending.get()) is not None:
            reply = self.handle(request)
            if reply is not None:
                self._send(request, reply)

    def handle(self, request: CommandRequest) -> dict[str, Any] | None:
        """Run one request to its reply payload (None: ignored without reply)."""
        if request.retained:
            self.ignored_retained += 1
            log.warning("retained command ignored", verb=request.verb, topic=request.topic)
            return None
        try:
            extra = self._execute(request)
        except CommandError as exc:
            self.rejected += 1
            log.warning("command refused", verb=request.verb, error=str(exc))
            return {"ok": False, "verb": request.verb, **exc.fields, "error": str(exc)}
        self.executed += 1
        return {"ok": True, "verb": request.verb, **(extra or {})}

    def _execute(self, request: CommandRequest) -> dict[str, Any] | None:
        model = self._models.get(request.verb)
        if model is None:
            raise CommandError(f"unknown verb {request.verb!r}; known verbs: {sorted(self._models)}")
        if self._authenticator is not None:
            self._authenticator.verify(request)
        command = parse_payload(request.verb, request.payload, model)
        handler = self._handlers.get(request.verb)
        if handler is None:
            raise CommandError(f"verb {request.verb!r} is not available on this daemon")
        try:
            return handler(command)
        except CommandError:
            raise
        except Exception as exc:  # a handler bug must not kill the worker; the caller learns it failed
            log.exception("command handler failed", verb=request.verb)
            raise CommandError(f"{request.verb} failed: {type(exc).__name__}: {exc}") from exc

    def _send(self, request: CommandRequest, reply: dict[str, Any]) -> None:
        topic = request.response_topic or self._default_reply_topic
        try:
            self._reply(topic, reply, request.correlation_data)
        except Exception:
            log.exception("command reply failed", verb=request.verb, topic=topic)


def request_from_mqtt(verb: str, message: Any) -> CommandRequest:
    """A CommandRequest from a paho MQTTMessage (v5 properties read when present)."""
    props = getattr(message, "properties", None)
    user = dict(getattr(props, "UserProperty", []) or [])
    return CommandRequest(
        verb=verb,
        topic=message.topic,
        payload=bytes(message.payload),
        retained=bool(message.retain),
        response_topic=getattr(props, "ResponseTopic", None) or None,
        correlation_data=getattr(props, "CorrelationData", None),
        user_properties={str(k): str(v) for k, v in user.items()},
    )


def authenticator_from_settings(require_signature: bool, key: bytes | None, max_skew_s: float) -> Authenticator | None:
    """The HMAC check when signatures are required, else None (every well-formed command is accepted)."""
    if not require_signature:
        return None
    if not key:
        raise ValueError("commands.require_signature is true but commands.hmac_key is empty")
    return HmacAuthenticator(key, max_skew_s)
