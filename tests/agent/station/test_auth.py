"""Passwords (argon2), sessions (random tokens stored hashed, expiry) and the login rate limit."""

from __future__ import annotations

import pytest

from agent.station import auth
from agent.station.auth import LoginLimiter, PasswordChecker, SessionStore
from agent.station.config import StationConfig
from tests.agent.station.conftest import PASSWORDS, station_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_the_right_password_of_a_known_user_passes() -> None:
    checker = PasswordChecker(station_config().accounts())
    user = checker.check("tech", PASSWORDS["tech"])
    assert user is not None and user.role == "technician"
    assert checker.check("tech", PASSWORDS["view"]) is None
    assert checker.check("nobody", PASSWORDS["tech"]) is None
    assert PasswordChecker(StationConfig().accounts()).check("tech", "x") is None


def test_sessions_are_random_stored_hashed_and_end_at_logout() -> None:
    store = SessionStore(lifetime_s=60)
    token, session = store.create("tech", "technician")
    other, _ = store.create("tech", "technician")
    assert token != other and len(token) >= 40 and session.csrf_token != token
    assert token not in str(vars(store))  # only the token's SHA-256 is kept
    assert store.get(token) == session
    assert store.drop(token) == session and store.get(token) is None
    assert store.get(None) is None and store.get("forged") is None


def test_sessions_expire_after_their_lifetime() -> None:
    clock = FakeClock()
    store = SessionStore(lifetime_s=60, clock=clock)
    token, _ = store.create("view", "viewer")
    clock.now += 59.9
    assert store.get(token) is not None
    clock.now += 0.2
    assert store.get(token) is None


def test_session_count_is_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_SESSIONS", 3)
    store = SessionStore(lifetime_s=60)
    tokens = [store.create("tech", "technician")[0] for _ in range(4)]
    assert store.get(tokens[0]) is None and all(store.get(t) is not None for t in tokens[1:])


def test_csrf_token_compare() -> None:
    _, session = SessionStore(lifetime_s=60).create("tech", "technician")
    assert session.csrf_ok(session.csrf_token)
    assert not session.csrf_ok(None) and not session.csrf_ok("") and not session.csrf_ok(session.csrf_token + "x")


def test_limiter_refuses_after_the_allowed_failures_until_the_window_passes() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(attempts=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after(["client:a", "user:tech"]) == 0
        limiter.failed(["client:a", "user:tech"])
        clock.now += 1
    assert limiter.retry_after(["client:a"]) == pytest.approx(57)
    assert limiter.retry_after(["client:b", "user:tech"]) == pytest.approx(57)  # the user name, from anywhere
    assert limiter.retry_after(["client:b", "user:view"]) == 0
    clock.now += 57.1
    assert limiter.retry_after(["client:a", "user:tech"]) == 0


def test_a_correct_login_clears_the_user_name_but_not_the_client() -> None:
    limiter = LoginLimiter(attempts=2, window_s=60, clock=FakeClock())
    limiter.failed(["client:a", "user:tech"])
    limiter.failed(["client:a", "user:tech"])
    limiter.succeeded("user:tech")
    assert limiter.retry_after(["user:tech"]) == 0
    assert limiter.retry_after(["client:a"]) > 0


def test_limiter_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_TRACKED_KEYS", 10)
    limiter = LoginLimiter(attempts=2, window_s=60, clock=FakeClock())
    for i in range(50):
        limiter.failed([f"user:{i}"])
    assert len(limiter._failures) <= 10
