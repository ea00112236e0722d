"""Topics of one device and the verb of a command topic."""

from __future__ import annotations

from agent.publish.topics import Topics


def test_topics_live_under_the_base() -> None:
    topics = Topics("edge-inspect/box1")
    assert (topics.status, topics.events, topics.commands, topics.default_reply) == (
        "edge-inspect/box1/status", "edge-inspect/box1/events", "edge-inspect/box1/cmd/+", "edge-inspect/box1/replies")
    assert topics.command("reload") == "edge-inspect/box1/cmd/reload"
    assert topics.result("cam0") == "edge-inspect/box1/cameras/cam0/result"
    assert topics.camera_status("cam0") == "edge-inspect/box1/cameras/cam0/status"


def test_only_our_own_single_level_command_topics_have_a_verb() -> None:
    topics = Topics("edge-inspect/box1")
    assert topics.command_verb("edge-inspect/box1/cmd/trigger") == "trigger"
    assert topics.command_verb("edge-inspect/box2/cmd/trigger") is None
    assert topics.command_verb("edge-inspect/box1/cmd/a/b") is None
    assert topics.command_verb("edge-inspect/box1/cmd/") is None
