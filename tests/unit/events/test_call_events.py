"""What the call layer puts in its events: the customer record of the screen-pop and the
queue figures (the rest is covered end to end with real phones in
tests/integration/test_events.py)."""

from __future__ import annotations

from tsunagu.acd.engine import QueueSnapshot
from tsunagu.calls.call_events import customer_record, queue_stats
from tsunagu.settings import CustomerSettings

CUSTOMERS = [
    CustomerSettings(number="0312340000", agent="1002", name="Sato"),
    CustomerSettings(number="+81901234567", agent="1001", name="Tanaka"),
]


def test_customer_found_whatever_the_number_format() -> None:
    for caller in ("0901234567", "+81901234567", "81901234567"):
        record = customer_record(CUSTOMERS, caller)
        assert record is not None, caller
        assert (record.number, record.name, record.rep) == ("+81901234567", "Tanaka", "1001")


def test_unknown_or_unreadable_caller_has_no_record() -> None:
    assert customer_record(CUSTOMERS, "0900000000") is None
    assert customer_record(CUSTOMERS, "anonymous") is None
    assert customer_record([], "0901234567") is None


def test_queue_stats_counts_busy_as_working_but_not_available() -> None:
    snapshot = QueueSnapshot(
        queue_id="support",
        waiting=2,
        longest_wait_s=12.6,
        service_level=None,
        aht_s=180.0,
        staffed=3,
        available=1,
        overflow_active=(),
    )
    (figures,) = queue_stats([snapshot]).queues
    assert figures.queue == "support" and figures.waiting == 2
    assert figures.oldest_wait_s == 13
    assert (figures.agents_available, figures.agents_busy) == (1, 2)
