"""Reception statistics of one RTP source: RFC 3550 Appendix A.1, A.3 and A.8.

These numbers feed two things: the report blocks of our RTCP receiver reports (§6.4.1),
and the audio-quality alerts the operator sees ("unstable or quiet audio" in the emergency
plan of REQUIREMENTS §5), which are judged from loss and jitter. Everything is sans-IO:
the arrival time of each packet is passed in, in seconds, and converted to the payload
clock as A.8 requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu.media.rtcp import ReportBlock

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "MIN_SEQUENTIAL", "ReceptionSnapshot", "RtpReceiverStats"]

RTP_SEQ_MOD = 1 << 16
# A.1 suggests these for a 50 packets/s (and up) stream; a jump of more than MAX_DROPOUT
# ahead or MAX_MISORDER behind is treated as a restart of the sender (or garbage).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


@dataclass(frozen=True, slots=True)
class ReceptionSnapshot:
    """Cumulative reception quality of one source, for dashboards and alerts."""

    ssrc: int
    expected: int
    received: int
    lost: int
    jitter_ms: float
    valid: bool


class RtpReceiverStats:
    """Per-source state of RFC 3550 A.1 (sequence validation), A.3 (loss) and A.8 (jitter).

    ``probation`` is how many packets in sequence must arrive before the source is
    believed (A.1's MIN_SEQUENTIAL); pass ``0`` when signalling already vouches for the
    stream, so that its very first packet is counted.
    """

    __slots__ = (
        "_last_sr_arrival",
        "_last_sr_middle",
        "_transit",
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "max_seq",
        "probation",
        "received",
        "received_prior",
        "ssrc",
    )

    def __init__(
        self,
        ssrc: int,
        first_sequence: int,
        clock_rate: int = 8000,
        probation: int = MIN_SEQUENTIAL,
    ) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.jitter = 0.0  # in timestamp units, as carried in report blocks (A.8)
        self._transit: float | None = None
        self._last_sr_middle = 0
        self._last_sr_arrival = 0.0
        self._init_seq(first_sequence)
        # A.1: "max_seq = seq - 1" so that the first packet is seen as in sequence.
        self.max_seq = (first_sequence - 1) & 0xFFFF
        self.probation = probation
        if probation == 0 and first_sequence == 0:
            # Already trusted and about to wrap: start one cycle below zero, so that the
            # extended maximum is base_seq - 1 and the first packet does not add a cycle.
            self.cycles = -RTP_SEQ_MOD

    def _init_seq(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self.bad_seq = RTP_SEQ_MOD + 1  # so sequence == bad_seq is false
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    @property
    def valid(self) -> bool:
        """Whether the source has left probation (A.1)."""
        return self.probation == 0

    def update(self, sequence: int, timestamp: int, arrival: float, *, jitter: bool = True) -> bool:
        """Account for one packet; return whether it counts as valid (A.1 ``update_seq``).

        ``arrival`` is our receive time in seconds. Pass ``jitter=False`` for packets whose
        timestamp is not the sampling instant of their payload (RFC 4733 events carry the
        start of the event for their whole duration) so they do not distort A.8.
        """
        udelta = (sequence - self.max_seq) & 0xFFFF
        if self.probation:
            # A.1: a source is valid only once MIN_SEQUENTIAL packets arrive in sequence.
            if sequence == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = sequence
                if self.probation == 0:
                    self._init_seq(sequence)
                    self.received += 1
                    self._update_jitter(timestamp, arrival, jitter)
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = sequence
            return False
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap; a smaller number means it wrapped.
            if sequence < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = sequence
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump. Two in a row (sequence == bad_seq) means the sender
            # restarted without changing SSRC: resynchronise; otherwise drop this one.
            if sequence == self.bad_seq:
                self._init_seq(sequence)
                self._transit = None
            else:
                self.bad_seq = (sequence + 1) & 0xFFFF
                return False
        # else: a duplicate or a packet reordered by less than MAX_MISORDER; counted.
        self.received += 1
        self._update_jitter(timestamp, arrival, jitter)
        return True

    def _update_jitter(self, timestamp: int, arrival: float, enabled: bool) -> None:
        if not enabled:
            return
        # A.8: transit = arrival - timestamp in the payload clock; J += (|D| - J) / 16.
        transit = arrival * self.clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is None:
            return
        # Timestamps wrap at 2^32: fold the difference into (-2^31, 2^31].
        d = (transit - previous + 2**31) % 2**32 - 2**31
        self.jitter += (abs(d) - self.jitter) / 16.0

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received (A.3): cycles plus max_seq."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the source became valid (A.3)."""
        if self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter (A.8) in milliseconds."""
        return self.jitter * 1000.0 / self.clock_rate

    def snapshot(self) -> ReceptionSnapshot:
        """Cumulative figures without disturbing the per-report interval counters."""
        return ReceptionSnapshot(
            self.ssrc, self.expected, self.received, self.lost, self.jitter_ms, self.valid
        )

    def interval_fraction_lost(self) -> int:
        """Fraction lost since the previous call, in 1/256 units (A.3), and start a new interval.

        Called once per RTCP report; duplicates can make the interval's loss negative,
        which A.3 reports as zero.
        """
        expected = self.expected
        received = self.received
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = received - self.received_prior
        self.received_prior = received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    def on_sender_report(self, ntp_seconds: int, ntp_fraction: int, arrival: float) -> None:
        """Remember the source's last SR, for LSR/DLSR in our next report block (§6.4.1)."""
        self._last_sr_middle = ((ntp_seconds & 0xFFFF) << 16) | (ntp_fraction >> 16)
        self._last_sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """Build the report block about this source for an RR or SR sent at ``now`` (§6.4.1).

        Starts a new loss interval (see :meth:`interval_fraction_lost`).
        """
        fraction = self.interval_fraction_lost()
        # §6.4.1: cumulative loss is a signed 24-bit value; clamp rather than wrap.
        lost = max(-0x800000, min(0x7FFFFF, self.lost))
        if self._last_sr_middle:
            delay = max(0.0, now - self._last_sr_arrival)
            dlsr = min(0xFFFFFFFF, int(delay * 65536))
        else:
            dlsr = 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=min(0xFFFFFFFF, int(self.jitter)),
            last_sr=self._last_sr_middle,
            delay_since_last_sr=dlsr,
        )
