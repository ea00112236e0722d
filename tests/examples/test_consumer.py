"""The reference consumer's bookkeeping (examples/consumer.py:InOrder): once, in seq order, holes named for replay."""

from __future__ import annotations

from tests.agent.publish.test_mqtt import load_consumer_example

InOrder = load_consumer_example().InOrder


def result(seq: int, replay: bool = False) -> dict[str, object]:
    return {"seq": seq, "msg_id": f"m{seq}", **({"replay": True} if replay else {})}


def seqs(results: list[dict[str, object]]) -> list[object]:
    return [r["seq"] for r in results]


def test_early_results_wait_for_the_hole_and_duplicates_are_dropped() -> None:
    order = InOrder(next_seq=1)
    assert seqs(order.offer(result(1), now=0.0)) == [1]
    assert order.offer(result(1), now=0.1) == []  # a resend after a lost PUBACK
    assert order.offer(result(4), now=0.2) == [] and order.offer(result(4), now=0.3) == []
    assert order.hole() == (2, 3) and order.hole_since == 0.2
    assert seqs(order.offer(result(3, replay=True), now=1.0)) == []
    assert order.hole() == (2, 2)
    assert seqs(order.offer(result(2, replay=True), now=1.1)) == [2, 3, 4]
    assert order.hole() is None and order.hole_since is None and order.next_seq == 5


def test_pruned_seqs_are_skipped_so_later_results_flow_again() -> None:
    order = InOrder(next_seq=10)
    order.offer(result(13), now=0.0)
    assert seqs(order.skip([10, 11], now=1.0)) == []  # 12 is still missing
    assert seqs(order.skip([12], now=2.0)) == [13]
    assert order.next_seq == 14


def test_a_hole_is_asked_for_in_chunks_the_daemon_accepts() -> None:
    order = InOrder(next_seq=1)
    order.offer(result(5000), now=0.0)
    first, last = order.hole()
    assert (first, last) == (1, 1000)
