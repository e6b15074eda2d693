"""``kill -9`` in the middle of a call: everything written before the kill is there, and
the next start-up turns the half-written record into a consistent ``interrupted`` one."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta

from tsunagu.store import Disposition, Status, open_store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)

# Runs in a child process that SIGKILLs itself mid-call (no cleanup, no engine dispose).
_CHILD = """
import asyncio, os, signal, sys
from datetime import datetime, timedelta, timezone
from tsunagu.store import open_store

async def main():
    store = await open_store(sys.argv[1])
    t0 = datetime(2025, 4, 1, 9, 0, tzinfo=timezone.utc)
    call = await store.history.start_interaction(
        direction="inbound", caller="0312345678", dialled="0501234567", started_at=t0)
    leg = await store.history.add_leg(call.id, role="caller", call_id="crash@test",
                                      started_at=t0)
    await store.history.update(call.id, queue="support", queued_at=t0 + timedelta(seconds=3))
    await store.history.add_agent(call.id, "1001", "answered", t0 + timedelta(seconds=9))
    await store.history.update(call.id, answered_at=t0 + timedelta(seconds=9))
    await store.history.add_event(call.id, "dtmf", {"digit": "5"},
                                  at=t0 + timedelta(seconds=21))
    print(call.id, leg.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_kill_9_mid_call_leaves_a_consistent_interrupted_record(store_url: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        store_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    call_id, leg_id = out.decode().split()

    store = await open_store(store_url)
    try:
        before = await store.history.get(call_id)
        assert before is not None
        assert before.interaction.status is Status.ACTIVE
        assert before.interaction.agents_answered == ("1001",)
        assert [e.type for e in before.events][-1] == "dtmf"

        assert await store.history.mark_interrupted_on_startup() == [call_id]

        after = await store.history.get(call_id)
        assert after is not None
        i = after.interaction
        assert (i.status, i.disposition) == (Status.INTERRUPTED, Disposition.INTERRUPTED)
        assert (i.queue, i.answered_at) == ("support", T0 + timedelta(seconds=9))
        assert i.ended_at == T0 + timedelta(seconds=21)
        (leg,) = after.legs
        assert (leg.id, leg.call_id, leg.end_reason) == (leg_id, "crash@test", "interrupted")
        assert leg.ended_at == i.ended_at
        assert after.events[-1].type == "interrupted"
    finally:
        await store.close()
