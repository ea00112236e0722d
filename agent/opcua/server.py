"""The asyncua server on its own thread and event loop, so OPC UA clients never slow down inspection.

`start()` returns once the server listens (or raises why it could not: port taken, unreadable certificate). The
daemon's threads hand updates over with `update_state`, `add_result` and `set_job`: they only enqueue (thread-safe,
never blocking; a full queue drops the update and counts it), and the loop applies them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import structlog
from asyncua import Server, ua

from agent.capture.triggers import HandshakeState
from agent.config.opcua import OpcUaConfig
from agent.opcua import methods
from agent.opcua.space import ResultView, Space, apply_result, apply_state, build_space
from agent.opcua.users import LineUsers, certificate_users
from agent.station.server import NICE, lower_this_threads_priority

log = structlog.get_logger("agent.opcua")
MAX_PENDING_UPDATES = 10_000  # updates waiting for the loop; more are dropped (and counted), never block the daemon
POLICIES = {"None": ua.SecurityPolicyType.NoSecurity,
            "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
            "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt}
Update = tuple[str, Any]  # ("state", HandshakeState) | ("result", ResultView) | ("job", str)


class OpcUaServer:
    def __init__(self, config: OpcUaConfig, device_id: str, cameras: dict[str, str], trigger: methods.TriggerHandler,
                 switch_job: Callable[[str], str], jobs: Callable[[], list[str]]) -> None:
        self.config, self.device_id, self.cameras = config, device_id, cameras
        self._trigger, self._switch_job, self._jobs = trigger, switch_job, jobs
        self.dropped_updates = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._updates: asyncio.Queue[Update | None] | None = None
        self._thread: threading.Thread | None = None
        self._space: Space | None = None
        self._stopping: asyncio.Future[None] | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"opc.tcp://{host}:{self.config.port}/edge-inspect/"

    def start(self, timeout_s: float = 60.0) -> None:
        """Build the address space and listen, on the server's own thread; raises when that fails."""
        logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO logs every request: a line per read
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="opcua", daemon=True)
        self._thread.start()
        started.result(timeout_s)
        log.info("opcua server up", endpoint=self.endpoint, policies=self.config.security_policies,
                 anonymous=self.config.allow_anonymous)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Apply the updates already handed over, then close the server and its thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            self._loop.call_soon_threadsafe(self._enqueue, None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("opcua server did not stop in time", timeout_s=timeout_s)

    # ----- any thread: hand over, never wait --------------------------------------------------------------------
    def update_state(self, state: HandshakeState) -> None:
        self._hand_over(("state", state))

    def add_result(self, result: ResultView) -> None:
        self._hand_over(("result", result))

    def set_job(self, job: str) -> None:
        self._hand_over(("job", job))

    def _hand_over(self, update: Update) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the daemon is stopping
            self._loop.call_soon_threadsafe(self._enqueue, update)

    def _enqueue(self, update: Update | None) -> None:
        assert self._updates is not None
        try:
            self._updates.put_nowait(update)
        except asyncio.QueueFull:
            if update is None:  # stop() must get through even behind a full queue
                self._stopping = asyncio.ensure_future(self._updates.put(None))
                return
            self.dropped_updates += 1
            if self.dropped_updates in (1, 100) or self.dropped_updates % 10_000 == 0:
                log.warning("opcua updates dropped: the server's loop is behind", dropped=self.dropped_updates)

    # ----- the server's thread --------------------------------------------------------------------------------------
    def _serve(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._updates = asyncio.Queue(MAX_PENDING_UPDATES)  # before the loop is visible to the hand-over
        self._loop = loop
        try:
            loop.run_until_complete(self._main(started))
        except BaseException as exc:  # a failing server must never take the daemon down
            if not started.done():
                started.set_exception(exc)
            log.error("opcua server failed", error=repr(exc))
        finally:
            loop.close()

    async def _main(self, started: Future[None]) -> None:
        server = await self._create_server()
        async with server:
            # Built and listening at normal priority (start-up waits for it, and a starved nice-19 thread on a busy box
            # took over a minute); serving clients then yields the CPU to the detector.
            lower_this_threads_priority(NICE)
            started.set_result(None)
            await self._apply_updates()
            await self._space_state("Halted")

    async def _apply_updates(self) -> None:
        assert self._updates is not None and self._space is not None
        while (update := await self._updates.get()) is not None:
            kind, value = update
            try:
                if kind == "state":
                    await apply_state(self._space, value)
                elif kind == "result":
                    await apply_result(self._space, value)
                else:
                    await self._show_job(value)
            except Exception:  # one bad update (a camera renamed by a reload...) must not end the server
                log.exception("opcua update failed", kind=kind)

    async def _space_state(self, state: str) -> None:
        if self._space is not None:
            await self._space.state.write_value(ua.Variant(state, ua.VariantType.String))

    async def _create_server(self) -> Server:
        """The server with its endpoints, security, users, address space and methods (not yet listening)."""
        c = self.config
        users: Any = LineUsers(c, await certificate_users(c))  # asyncua's UserManager protocol, duck-typed
        server = Server(user_manager=users)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"edge-inspect {self.device_id}")
        await server.set_application_uri(f"urn:edge-inspect:{self.device_id}")
        if c.certificate_file is not None and c.private_key_file is not None:
            await server.load_certificate(str(c.certificate_file))
            await server.load_private_key(str(c.private_key_file))
        server.set_security_policy([POLICIES[p] for p in c.security_policies])
        server.set_identity_tokens(self._identity_tokens())
        self._space = await build_space(server, c.namespace_uri, self.cameras)
        await self._add_methods()
        await self._space.jobs.write_value(ua.Variant(self._jobs(), ua.VariantType.String))
        await self._space_state("Operational")
        return server

    def _identity_tokens(self) -> list[type]:
        tokens: list[type] = []
        if self.config.accounts():
            tokens.append(ua.UserNameIdentityToken)
        if self.config.certificate_users:
            tokens.append(ua.X509IdentityToken)
        if self.config.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        return tokens

    async def _add_methods(self) -> None:
        assert self._space is not None
        idx, root = self._space.idx, self._space.root
        trigger_in = [_argument("Camera", "a camera in trigger mode"), _argument("PartId", "the part's id, echoed in "
                      "its result"), _argument("Expect", "'', 'pass' or 'fail': what the line knows the part is")]
        trigger_out = [_argument("Status", "accepted, busy or overflow (busy/overflow: nothing captured, retry)"),
                       _argument("Position", "place among the camera's parts in flight (1: none ahead; 0: refused)",
                                 ua.VariantType.UInt32), _argument("Message", "why a trigger was refused")]
        await root.add_method(_node_id(idx, "VisionSystem.Trigger"), ua.QualifiedName("Trigger", idx),
                              self._on_trigger, trigger_in, trigger_out)
        await root.add_method(_node_id(idx, "VisionSystem.SelectJob"), ua.QualifiedName("SelectJob", idx),
                              self._on_select_job, [_argument("Job", "a model store version, e.g. v0003")],
                              [_argument("Job", "the model version now served")])

    async def _on_trigger(self, _parent: ua.NodeId, *variants: ua.Variant) -> Any:
        args = [v.Value for v in variants]
        try:
            answer = methods.trigger(self._trigger, args)  # quick: the handshake answers without waiting
        except methods.MethodProblem as problem:
            return _bad_call(problem, len(variants), [ua.Variant("error", ua.VariantType.String),
                                                      ua.Variant(0, ua.VariantType.UInt32)])
        return [ua.Variant(answer.status, ua.VariantType.String), ua.Variant(answer.position, ua.VariantType.UInt32),
                ua.Variant(answer.message, ua.VariantType.String)]

    async def _on_select_job(self, _parent: ua.NodeId, *variants: ua.Variant) -> Any:
        args = [v.Value for v in variants]
        loop = asyncio.get_running_loop()
        try:  # loading a model takes seconds: off the loop, so reads and events go on meanwhile
            served = await loop.run_in_executor(None, methods.select_job, self._switch_job, args)
        except methods.MethodProblem as problem:
            return _bad_call(problem, len(variants), [])
        await self._show_job(served)
        return [ua.Variant(served, ua.VariantType.String)]

    async def _show_job(self, job: str) -> None:
        """The served model, and the store's versions again (a recalibration may have added one)."""
        assert self._space is not None
        await self._space.job.write_value(ua.Variant(job, ua.VariantType.String))
        await self._space.jobs.write_value(ua.Variant(self._jobs(), ua.VariantType.String))


def _argument(name: str, description: str, vtype: ua.VariantType = ua.VariantType.String) -> ua.Argument:
    argument = ua.Argument()
    argument.Name, argument.DataType, argument.ValueRank = name, ua.NodeId.from_string(f"i={vtype.value}"), -1
    argument.Description = ua.LocalizedText(description)
    return argument


def _node_id(idx: int, path: str) -> ua.NodeId:
    return ua.NodeId.from_string(f"ns={idx};s={path}")


def _bad_call(problem: methods.MethodProblem, count: int, outputs: Sequence[ua.Variant]) -> ua.CallMethodResult:
    """A Bad result: the status names the kind of problem, InputArgumentResults the argument, Message the rest."""
    log.info("opcua method call refused", status=problem.status, error=problem.message)
    code = ua.StatusCode(getattr(ua.StatusCodes, problem.status))
    result = ua.CallMethodResult()
    result.StatusCode = code
    result.InputArgumentResults = [code if i == problem.argument else ua.StatusCode() for i in range(count)]
    result.OutputArguments = [*outputs, ua.Variant(problem.message, ua.VariantType.String)]
    return result
