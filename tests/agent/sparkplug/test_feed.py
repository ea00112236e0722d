"""The outbox as the edge node reads it: seq order, confirmation by echo or by age, resends after a lost session,
verdicts counted once, pruned results skipped and counted."""

from __future__ import annotations

from pathlib import Path

from agent.publish.outbox import Outbox, Retention
from agent.sparkplug.feed import OutboxFeed
from agent.statedir import StateDir
from tests.agent.publish.test_outbox import FakeClock
from tests.agent.sparkplug.helpers import open_outbox, store_results


def test_results_go_out_in_order_and_unconfirmed_ones_again_after_a_lost_session(tmp_path: Path) -> None:
    outbox, clock = open_outbox(tmp_path), FakeClock()
    feed = OutboxFeed(outbox, cursor=None, assume_after_s=15, clock=clock)
    store_results(outbox, [("cam0", "pass", []), ("cam0", "fail", ["hole"]), ("gate", "pass", [])])
    taken = feed.take(10)
    assert [(r.seq, r.camera, r.result["verdict"]) for r in taken] == [(1, "cam0", "pass"), (2, "cam0", "fail"),
                                                                       (3, "gate", "pass")]
    for result in taken:
        feed.count(result)
        feed.sent(result.seq)
    feed.confirm_upto(2)  # the broker echoed result 2: 1 and 2 are there
    assert feed.confirmed == 2 and not feed.caught_up()
    feed.restart()  # the link died before 3 was echoed
    again = feed.take(10)
    assert [r.seq for r in again] == [3]
    feed.count(again[0])
    assert feed.counts == {"cam0": {"pass": 1, "fail": 1}, "gate": {"pass": 1}}  # 3 is not counted twice
    feed.sent(3)
    clock.now += 14.9
    feed.confirm_aged()
    assert feed.confirmed == 2
    clock.now += 0.2  # no echo (a broker ACL), but the link stayed up long enough
    feed.confirm_aged()
    assert feed.confirmed == 3 and feed.caught_up()


def test_a_new_node_starts_at_the_newest_result_and_resumes_from_its_cursor(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    store_results(outbox, [("cam0", "pass", [])] * 4)
    assert OutboxFeed(outbox, cursor=None, assume_after_s=15).take(10) == []  # the history is not sent
    assert [r.seq for r in OutboxFeed(outbox, cursor=2, assume_after_s=15).take(10)] == [3, 4]
    assert OutboxFeed(outbox, cursor=99, assume_after_s=15).confirmed == 4  # a replaced outbox: from its newest


def test_results_pruned_before_they_were_sent_are_skipped_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(StateDir(tmp_path).outbox, max_bytes=1 << 20, retention=Retention(max_age_s=3600, max_bytes=0))
    feed = OutboxFeed(outbox, cursor=0, assume_after_s=15)
    store_results(outbox, [("cam0", "pass", [])] * 3)
    outbox.ack([1, 2])  # delivered over MQTT, and retention keeps nothing
    assert [r.seq for r in feed.take(10)] == [3]
    assert feed.skipped == 2


def test_a_row_that_is_not_a_result_is_passed_over(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    outbox.append("edge-inspect/box-1/cameras/cam0/result", lambda seq, msg_id: b"\x00 not json")
    store_results(outbox, [("cam0", "pass", [])])
    feed = OutboxFeed(outbox, cursor=0, assume_after_s=15)
    assert [r.seq for r in feed.take(10)] == [2]
    assert feed.unreadable == 1
