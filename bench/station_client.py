"""A browser-like client of the station's live page, for `bench.pipeline --station-compare` (not a test).

It makes the requests `agent/station/static/live.js` makes a browser make: log in (POST /api/login), GET /api/me,
open /api/live (server-sent events) and, per camera, show each announced frame one at a time: once a
picture has loaded, the newest one announced meanwhile. The picture comes inside the event (`live.jpeg`, a data:
URI); an event without it, from an older station, makes the client fetch `frame.jpg?seq=N` as the page does. When a
camera's newest fail/uncertain frame changes it GETs the camera's recent list (its thumbnails come inline, as data:
URIs; a list without them, from an older station, makes it fetch each thumbnail not fetched before).
It does not decode or draw the JPEGs (a browser would, in its own process).

It runs in a process of its own, as a browser does, so it never takes the daemon's GIL:

    BENCH_STATION_PASSWORD=... python -m bench.station_client http://127.0.0.1:PORT/ USER

It prints `ready` once the first live event arrived; when its stdin closes it prints one JSON line: the
`time.monotonic()` instant (CLOCK_MONOTONIC, the same clock in every process) of each live update, each frame
JPEG and each thumbnail, the JPEG sizes, errors, and its own CPU seconds. Standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import resource
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

SESSION_COOKIE = "edge_inspect_session"
TIMEOUT_S = 30.0


@dataclass
class Tallies:
    """What the client saw, as monotonic instants (the bench counts those inside its measuring window)."""

    updates: list[float] = field(default_factory=list)
    jpegs: list[float] = field(default_factory=list)
    jpeg_bytes: list[int] = field(default_factory=list)
    thumbs: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class CameraCard:
    """live.js's per-camera card state: the newest announced frame, the one on screen, the newest recent id."""

    wanted: dict[str, Any] | None = None
    shown_seq: int = 0
    recent_id: int | None = None
    thumbs: set[int] = field(default_factory=set)


class LiveClient:
    def __init__(self, base_url: str, user: str, password: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.user, self.password = user, password
        self.cookie = ""
        self.cards: dict[str, CameraCard] = {}
        self.tallies = Tallies()
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.api = self._connection()
        self.stream: http.client.HTTPConnection | None = None

    # ----- requests -------------------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes, Any]:
        """One request on the keep-alive API connection (a browser reuses its connections too)."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.api.request(method, path, body=data, headers=headers)
        response = self.api.getresponse()
        return response.status, response.read(), response.headers

    def get_json(self, path: str) -> Any:
        status, data, _ = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return json.loads(data)

    def log_in(self) -> None:
        status, data, headers = self.request("POST", "/api/login", {"name": self.user, "password": self.password})
        if status != 200:
            raise RuntimeError(f"login: HTTP {status} {data[:200]!r}")
        for value in headers.get_all("Set-Cookie") or []:
            if value.startswith(SESSION_COOKIE + "="):
                self.cookie = value.split(";", 1)[0]
        if not self.cookie:
            raise RuntimeError("login: no session cookie in the answer")
        self.get_json("/api/me")

    # ----- the live stream (live.js: openStream, applyUpdate, renderCamera) ------------------------------------------
    def apply_update(self, update: dict[str, Any]) -> None:
        with self.changed:
            for camera in update.get("cameras", []):
                card = self.cards.setdefault(camera["name"], CameraCard())
                if camera.get("live"):
                    card.wanted = camera["live"]
            self.changed.notify()

    def read_stream(self) -> None:
        """Follow /api/live until stopped; every `live` event is an update."""
        self.stream = self._connection()
        self.stream.request("GET", "/api/live", headers={"Cookie": self.cookie, "Accept": "text/event-stream"})
        response = self.stream.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET /api/live: HTTP {response.status}")
        event, data = "message", ""
        while not self.stopping.is_set():
            line = response.readline().decode()
            if not line:
                return  # the server ended the stream
            line = line.rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line:
                self.dispatch(event, data)
                event, data = "message", ""

    def dispatch(self, event: str, data: str) -> None:
        if event == "live":
            self.tallies.updates.append(time.monotonic())
            self.apply_update(json.loads(data))
            self.ready.set()
        elif event == "logout":
            self.tallies.errors.append("logged out by the server")
            self.stopping.set()

    # ----- frames (live.js: loadFrame, frameLoaded, renderLive, refreshRecent) ----------------------------------------
    def next_frame(self) -> tuple[str, dict[str, Any]] | None:
        """Wait for a camera whose announced frame is not the one on screen; None once stopping."""
        with self.changed:
            while not self.stopping.is_set():
                for name, card in self.cards.items():
                    if card.wanted is not None and card.wanted["seq"] != card.shown_seq:
                        return name, card.wanted
                self.changed.wait(0.5)
        return None

    def fetch_frames(self) -> None:
        while (item := self.next_frame()) is not None:
            name, live = item
            status, data = self.picture(name, live)
            if status == 200:
                self.tallies.jpegs.append(time.monotonic())
                self.tallies.jpeg_bytes.append(len(data))
            else:
                self.tallies.errors.append(f"frame.jpg: HTTP {status}")
            card = self.cards[name]
            card.shown_seq = live["seq"]
            if live.get("newest_recent") != card.recent_id:
                card.recent_id = live.get("newest_recent")
                self.fetch_recent(name, card)

    def picture(self, name: str, live: dict[str, Any]) -> tuple[int, bytes]:
        """The announced frame's JPEG: from the event's data: URI, else by a request."""
        if live.get("jpeg"):
            return 200, base64.b64decode(live["jpeg"].partition(",")[2])
        status, data, _ = self.request("GET", f"/api/cameras/{quote(name)}/frame.jpg?seq={live['seq']}")
        return status, data

    def fetch_recent(self, name: str, card: CameraCard) -> None:
        """The recent list, then each thumbnail the page does not hold yet and the list did not carry inline."""
        listing = self.get_json(f"/api/cameras/{quote(name)}/recent")
        for frame in listing["frames"]:
            if frame.get("thumbnail"):
                if frame["id"] not in card.thumbs:
                    self.tallies.thumbs.append(time.monotonic())  # counted as shown, no request needed
                card.thumbs.add(frame["id"])
            elif frame["id"] not in card.thumbs:
                status, _, _ = self.request("GET", frame["image"])
                if status == 200:
                    self.tallies.thumbs.append(time.monotonic())
                else:
                    self.tallies.errors.append(f"recent thumbnail: HTTP {status}")
                card.thumbs.add(frame["id"])

    # ----- running ----------------------------------------------------------------------------------------------------
    def run_in_background(self) -> None:
        self.log_in()  # then, as the page does, only the stream: its first event describes every camera
        for target in (self.read_stream, self.fetch_frames):
            threading.Thread(target=self._guarded, args=(target,), daemon=True).start()

    def _guarded(self, target: Any) -> None:
        try:
            target()
        except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
            if not self.stopping.is_set():
                self.tallies.errors.append(f"{target.__name__}: {exc!r}")
                self.ready.set()  # let the bench see the failure instead of waiting for it

    def stop(self) -> None:
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self.stream is not None and self.stream.sock is not None:
            self.stream.sock.shutdown(socket.SHUT_RDWR)  # unblocks the stream reader


def main() -> None:
    base_url, user = sys.argv[1], sys.argv[2]
    client = LiveClient(base_url, user, os.environ["BENCH_STATION_PASSWORD"])
    client.run_in_background()
    if not client.ready.wait(TIMEOUT_S):
        client.tallies.errors.append(f"no live event within {TIMEOUT_S:.0f} s")
    print("ready", flush=True)
    sys.stdin.read()  # the bench closes our stdin at the end of its measuring window
    client.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    t = client.tallies
    print(json.dumps({"updates": t.updates, "jpegs": t.jpegs, "jpeg_bytes": t.jpeg_bytes, "thumbs": t.thumbs,
                      "errors": t.errors, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}), flush=True)


if __name__ == "__main__":
    main()
