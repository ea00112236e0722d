"""Every MQTT topic of one device, under `{prefix}/{device_id}` (docs/mqtt.md lists them with their payloads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The topics under one base, `Settings.base_topic`."""

    base: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def commands(self) -> str:
        """The subscription that receives every verb."""
        return f"{self.base}/cmd/+"

    @property
    def default_reply(self) -> str:
        return f"{self.base}/replies"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def camera_status(self, camera: str) -> str:
        return f"{self.base}/cameras/{camera}/status"

    def handshake(self, camera: str) -> str:
        """The retained trigger handshake state of a trigger-mode camera."""
        return f"{self.base}/cameras/{camera}/handshake"

    def result(self, camera: str) -> str:
        return f"{self.base}/cameras/{camera}/result"

    def command_verb(self, topic: str) -> str | None:
        """The verb of a `cmd/{verb}` topic, or None when `topic` is not one of ours."""
        head = f"{self.base}/cmd/"
        rest = topic[len(head) :] if topic.startswith(head) else ""
        return rest if rest and "/" not in rest else None
