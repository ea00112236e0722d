"""Passwords, server-side sessions and the login rate limit of the station.

A session is a random token held by the browser in an HttpOnly cookie; the server keeps only its SHA-256 (a leaked
session table cannot be replayed) with the user, role, expiry and a per-session CSRF token that state-changing
requests must echo in a header. Everything here is thread-safe: FastAPI runs sync endpoints on a thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from agent.station.config import Role, StationUser

Clock = Callable[[], float]
MAX_SESSIONS = 1000  # a bound so a login loop cannot grow memory; the oldest session goes first
MAX_TRACKED_KEYS = 10_000  # rate-limit keys (clients, names) remembered at most
CONCURRENT_VERIFIES = 2  # an argon2 verify takes ~64 MiB and tens of ms: never let a login flood run 40 at once


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf_token: str
    expires_at: float  # on the store's clock (monotonic)
    expires_wall: float  # the same instant as a UNIX time, for the page

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


class PasswordChecker:
    """argon2 verification of `name`/`password` against the configured users, in constant work for unknown names."""

    def __init__(self, accounts: dict[str, StationUser]) -> None:
        self._accounts = accounts
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))  # unknown users cost as much as known ones
        self._slots = threading.BoundedSemaphore(CONCURRENT_VERIFIES)

    def check(self, name: str, password: str) -> StationUser | None:
        """The user when the password matches, else None."""
        user = self._accounts.get(name)
        stored = user.password_hash.get_secret_value() if user is not None else self._dummy_hash
        with self._slots:
            try:
                self._hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
        return user


class SessionStore:
    """Token -> session, by the token's SHA-256; sessions end at logout or after `lifetime_s`."""

    def __init__(self, lifetime_s: float, clock: Clock = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, role: Role) -> tuple[str, Session]:
        """A new session; returns the token for the cookie (shown once, stored only hashed) and the session."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(user, role, secrets.token_urlsafe(32), now + self.lifetime_s, time.time() + self.lifetime_s)
        with self._lock:
            self._prune(now)
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]  # dicts keep insertion order: this is the oldest
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(_digest(token))
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[_digest(token)]
                return None
            return session

    def drop(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            return self._sessions.pop(_digest(token), None)

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]


class LoginLimiter:
    """At most `attempts` failed logins per key (a client address, a user name) within `window_s`."""

    def __init__(self, attempts: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again; 0 when none is over its limit."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.attempts:
                    wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= MAX_TRACKED_KEYS:
                self._forget_stale(now)
            for key in keys:
                self._failures.setdefault(key, deque(maxlen=self.attempts)).append(now)

    def succeeded(self, key: str) -> None:
        """A correct password clears that user name's failures (not the client's: one known account must not
        unlock guessing at the others)."""
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def _forget_stale(self, now: float) -> None:
        for key in [k for k in self._failures if not self._recent(k, now)]:
            del self._failures[key]
        while len(self._failures) >= MAX_TRACKED_KEYS:
            del self._failures[next(iter(self._failures))]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
