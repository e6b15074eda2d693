"""Early media: what a dialled party plays before it answers, relayed to whoever waits.

A carrier announces "the number you have dialled is not in service", plays its ringback
tone, or a phone plays its own ringback, in *early media*: RTP flowing after a provisional
response that carried the SDP answer (183 Session Progress, RFC 3261 §13.2.1; the
gateway model of RFC 3960 §3). Without relaying it the waiting side hears silence and
hangs up on a call that was about to be answered, or never learns why it failed.

The SDP of the 183 is the answer to our offer; the 2xx carries the same answer (RFC 3264
§5: no change without a new offer), so applying it again at the answer is harmless. We
send our own 183s unreliably (no 100rel, RFC 3262): a lost 183 costs the caller the
announcement, never the call.
"""

from __future__ import annotations

import logging

from tsunagu.calls.legs import SipLeg
from tsunagu.media.sdp import SessionDescription

log = logging.getLogger("tsunagu.calls")


async def accept_early(source: SipLeg) -> bool:
    """Wait for ``source``'s early SDP and apply it to its media; False if unusable."""
    response = await source.early
    try:
        await source.media.accept_answer(SessionDescription.parse(response.body))
    except Exception as exc:  # the peer's SDP: its early media is lost, not the call
        log.info("early media with unusable SDP", extra={"leg": source.leg_id, "error": str(exc)})
        return False
    return True


async def relay_early_media(source: SipLeg, listener: SipLeg) -> bool:
    """Once ``source`` (a leg we dialled) sends early media, bridge ``listener`` (a leg
    already answered: a caller in a flow, an agent waiting for a callback's customer) to
    it. Returns True once bridged; the caller of this function unbridges on failure."""
    if not await accept_early(source) or listener.ended.done() or not listener.has_media:
        return False
    await listener.media.bridge(source.media)
    log.info("early media relayed", extra={"from": source.leg_id, "to": listener.leg_id})
    return True


async def end_early_media(source: SipLeg, listener: SipLeg) -> None:
    """The dialled leg failed: ``listener`` stops hearing it (and may be played to again)."""
    usable = listener.has_media and source.has_media and not listener.ended.done()
    if usable and listener.media.bridged_to is source.media:
        await listener.media.unbridge()
