"""The two rate limits that keep a flood of bad messages from costing a worker more than a
trickle (SECURITY.md, "Messages that fail 1-4 are dropped"): the log of rejected messages
(about ten lines a second, then a summary of how many were not logged) and the unsigned
rejection notices sent back to the sender (at most twenty a second per worker).

Both limiters are token buckets (:mod:`syftzmq.worker.ratelimit`), which read ``time.monotonic``
through that module's ``time``; the tests replace that reference with a clock they move by hand, so "within one second" and "the next second" are
exact and nothing sleeps.
"""

from __future__ import annotations

import logging
import types

import pytest
import zmq

from syftzmq.wire.notice import decode_notice
from syftzmq.worker import ratelimit
from syftzmq.worker.notices import NOTICES_PER_SECOND, Notices
from syftzmq.worker.rejects import Rejections

pytestmark = pytest.mark.timeout(30)

LOGGER = "syftzmq.worker"  # the logger rejects.py writes to (a worker's own log)


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic)
    monkeypatch.setattr(ratelimit, "time", fake_time)
    return clock


@pytest.fixture
def lines(caplog):
    """The warnings the rejection log wrote, as text (only this logger's)."""
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def read() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return read


def rejected_lines(text: list[str]) -> list[str]:
    return [line for line in text if line.startswith("rejected a message")]


def summary_lines(text: list[str]) -> list[str]:
    return [line for line in text if "were not logged" in line]


# ------------------------------------------------------------------ the log of rejections

def test_a_burst_of_a_hundred_rejections_logs_ten_lines_and_counts_all(clock, lines):
    """A flood arriving at once is logged ten lines and no more (the log cannot become the
    denial of service), yet every rejection is counted: the counters, not the log, are what
    PING reports, so they must stay exact."""
    log = Rejections()
    for i in range(100):
        log.record("bad_signature", b"peer-%d" % i, "bad signature")
    assert len(rejected_lines(lines())) == 10
    assert summary_lines(lines()) == []  # nothing to summarise until the log may write again
    assert log.by_reason == {"bad_signature": 100}
    assert log.total == 100


def test_a_flood_spread_over_one_second_logs_at_most_twenty_lines(clock, lines):
    """Spread evenly over a second, a flood gets the initial ten plus what one second refills
    (ten): "about ten lines a second" is the sustained rate of a bucket that starts full."""
    log = Rejections()
    for i in range(100):
        clock.now = 1000.0 + i / 100  # all within [0 s, 1 s)
        log.record("unsigned", b"peer", "unsigned")
    assert 10 <= len(rejected_lines(lines())) <= 20
    assert log.by_reason == {"unsigned": 100}


def test_a_long_flood_is_logged_at_ten_lines_a_second(clock, lines):
    """Over ten seconds of 100 rejections a second, the log writes the first burst of ten and
    then ten a second: at most 10 + 10 * 10 lines of rejections, not the 1000 it saw."""
    log = Rejections()
    for i in range(1000):
        clock.now = 1000.0 + i / 100
        log.record("bad_signature", b"peer", "bad signature")
    written = rejected_lines(lines())
    assert 100 <= len(written) <= 10 + 10 * 10
    assert log.by_reason == {"bad_signature": 1000}
    # the summaries account for every rejection that was not given its own line
    # and, once one more rejection a second later brings out the last summary, the summaries
    # account for every rejection that was not given its own line
    clock.now += 1.0
    log.record("bad_signature", b"peer", "bad signature")
    suppressed = sum(int(line.split()[0].lstrip("(")) for line in summary_lines(lines()))
    assert len(rejected_lines(lines())) + suppressed == 1001


def test_the_next_second_starts_with_one_summary_line_naming_how_many_were_not_logged(
        clock, lines):
    """After a suppressed burst, the next rejection the log may write is preceded by one line
    saying how many were left out, so a reader of the log knows the flood's size."""
    log = Rejections()
    for _ in range(100):
        log.record("bad_signature", b"peer", "bad signature")
    clock.now += 1.0
    log.record("replayed", b"peer", "replayed signature")
    text = lines()
    assert summary_lines(text) == ["(90 more rejected messages were not logged)"]
    assert text[-2:] == ["(90 more rejected messages were not logged)",
                         "rejected a message from b'peer' (replayed): replayed signature"]
    # and only one: the following lines are plain again until the next suppression
    log.record("replayed", b"peer", "replayed signature")
    assert len(summary_lines(lines())) == 1
    assert log.by_reason == {"bad_signature": 100, "replayed": 2}
    assert log.total == 102


def test_counts_by_reason_stay_exact_when_most_are_not_logged(clock, lines):
    """Several reasons at once, all beyond the log's allowance: each reason's count is exact."""
    log = Rejections()
    reasons = ["bad_signature", "unsigned", "replayed", "wrong_protocol", "too_large"]
    for i in range(250):
        log.record(reasons[i % 5], b"peer", "x")
    assert len(rejected_lines(lines())) == 10
    assert log.by_reason == {reason: 50 for reason in reasons}
    assert log.total == 250


def test_a_quiet_minute_does_not_save_up_a_bigger_burst(clock, lines):
    """The allowance refills up to ten lines and no further: after a long quiet spell a flood
    still gets ten lines at once, not sixty seconds' worth."""
    log = Rejections()
    clock.now += 60.0
    for _ in range(100):
        log.record("bad_signature", b"peer", "bad signature")
    assert len(rejected_lines(lines())) == 10


def test_a_logged_line_is_bounded_whatever_the_sender_sent(clock, lines):
    """The lines that are written quote the sender and detail only in part: a line's size does
    not grow with what an attacker puts in its identity or in the error it provokes."""
    log = Rejections()
    log.record("malformed", b"i" * 10_000, "d" * 10_000)
    (line,) = lines()
    assert len(line) < 500


# ------------------------------------------------------------------ rejection notices

class Router:
    """Stands in for the worker's ROUTER: records what is sent, or refuses like a full queue."""

    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[list[bytes]] = []
        self.refuse = refuse

    def send_multipart(self, frames, flags=0) -> None:
        assert flags & zmq.NOBLOCK, "a notice must never block the worker's loop"
        if self.refuse:
            raise zmq.Again()
        self.sent.append(frames)


def test_the_documented_notice_rate_is_twenty_a_second():
    """SECURITY.md says twenty a second per worker; the worker uses the default."""
    assert NOTICES_PER_SECOND == 20


def test_two_hundred_rejections_within_a_second_get_at_most_twenty_notices(clock):
    """A flood of 200 bad messages at once is answered by 20 small notices, not 200: a notice
    cannot be used to amplify a flood."""
    router = Router()
    notices = Notices(router)
    for i in range(200):
        notices.rejected(b"sender", "bad_signature", f"bad signature #{i}")
    assert len(router.sent) == notices.sent == 20
    identity, frame = router.sent[0]
    assert identity == b"sender"  # to the connection that sent the bad message
    assert decode_notice([frame]) == {"reason": "bad_signature", "detail": "bad signature #0"}


def test_a_flood_spread_over_one_second_gets_at_most_forty_notices(clock):
    """Spread over one second, the bucket's initial twenty plus one second's refill: twenty a
    second is the sustained rate, forty the most any single second can see."""
    router = Router()
    notices = Notices(router)
    for i in range(200):
        clock.now = 1000.0 + i / 200
        notices.rejected(b"sender", "unsigned", "unsigned")
    assert 20 <= notices.sent <= 40


def test_a_long_flood_gets_twenty_notices_a_second(clock):
    """Ten seconds at 200 bad messages a second: at most 20 + 20 * 10 notices of 2000."""
    router = Router()
    notices = Notices(router)
    for i in range(2000):
        clock.now = 1000.0 + i / 200
        notices.rejected(b"sender", "unsigned", "unsigned")
    assert 200 <= notices.sent <= 20 + 20 * 10


def test_a_quiet_minute_does_not_save_up_more_notices(clock):
    """The allowance refills up to twenty and no further: after a long quiet spell a flood
    still gets twenty notices, not a minute's worth."""
    notices = Notices(Router())
    clock.now += 60.0
    for _ in range(200):
        notices.rejected(b"sender", "bad_signature", "bad signature")
    assert notices.sent == 20


def test_the_limit_is_per_worker_not_per_sender(clock):
    """Many senders (or one attacker with many connections) share one worker's allowance."""
    router = Router()
    notices = Notices(router)
    for i in range(200):
        notices.rejected(b"sender-%d" % (i % 50), "bad_signature", "bad signature")
    assert notices.sent == 20
    clock.now += 1.0  # the next second: the allowance is back, for anyone
    for i in range(200):
        notices.rejected(b"other-%d" % i, "bad_signature", "bad signature")
    assert notices.sent == 40


def test_a_notice_that_cannot_be_sent_is_dropped_without_raising(clock):
    """A sender that is gone or does not read is owed nothing: the worker's loop goes on."""
    notices = Notices(Router(refuse=True))
    for _ in range(5):
        notices.rejected(b"gone", "bad_signature", "bad signature")
    assert notices.sent == 0


def test_a_flood_that_stopped_gets_its_summary_from_the_loop(clock, lines):
    """No rejection follows the flood: the loop's :meth:`Rejections.flush` writes the summary
    once the log may take a line again, once only, and owes nothing after."""
    rejections = Rejections()
    for _ in range(100):
        rejections.record("bad_signature", b"flooder", "bad signature: message rejected")
    assert rejections.owes_summary
    rejections.flush()  # the budget is spent within the same instant: not yet
    assert [line for line in lines() if "were not logged" in line] == []
    clock.now += 1.0
    rejections.flush()
    rejections.flush()
    assert [line for line in lines() if "were not logged" in line] == [
        "(90 more rejected messages were not logged)"]
    assert not rejections.owes_summary
