"""What the parts of the call controller share, declared once for the type checker.

Why mixins: :class:`~tsunagu.calls.controller.CallController` is one object — the SIP
core's transaction user, the owner of the calls in progress and of the ACD engine — but
its duties read best apart: blind and outside transfers (:mod:`.transfer`), internal calls
(:mod:`.internal`), queued callbacks (:mod:`.callbacks`), voicemail callback tasks
(:mod:`.voicemail_callbacks`). Each part is a mixin class whose
methods run on the controller itself, so moving a duty out changed no behaviour and no
call site. The parts inherit :class:`ControllerHost`, which *declares* (for mypy only,
under ``TYPE_CHECKING``) the state and the methods they use from the controller; there
are no runtime stubs — the controller defines them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tsunagu.acd.engine import AcdEngine
    from tsunagu.calls.call import Call
    from tsunagu.calls.legs import Legs, SipLeg
    from tsunagu.calls.voicemail_callbacks import LiveTask
    from tsunagu.center import Center
    from tsunagu.events import EventBus
    from tsunagu.media.interface import MediaEngine
    from tsunagu.sip.core import SipCore
    from tsunagu.sip.peer import Peer
    from tsunagu.store.callback_tasks import CallbackTasks
    from tsunagu.store.history import History


class ControllerHost:
    if TYPE_CHECKING:
        core: SipCore
        center: Center
        media: MediaEngine
        legs: Legs
        acd: AcdEngine
        calls: dict[str, Call]
        agent_ids: set[str]
        events: EventBus
        local_host: str
        local_port: int
        history: History | None
        callback_tasks: CallbackTasks | None
        live_tasks: dict[str, LiveTask]
        task_attempts: dict[str, LiveTask]

        @staticmethod
        def _now() -> float: ...
        def _spawn(self, coro: Any, name: str) -> None: ...
        def contact(self, transport: str = "UDP") -> str: ...
        def _leg(self, call: Call, role: str, peer: Peer) -> SipLeg: ...
        def _new_call(
            self, direction: str, caller: str, dialled: str, interaction_id: str | None = None
        ) -> Call: ...
        def _pump(self) -> None: ...
        def agent_answered(self, call: Call, agent_id: str) -> bool: ...
        def _agent_done(self, call: Call) -> None: ...
        def _no_answer(self, call: Call, agent_id: str) -> None: ...
        async def _ring_agent(self, call: Call, agent_id: str) -> SipLeg | None: ...
        async def _dial_out(
            self,
            call: Call,
            number: str,
            caller_id: str | None,
            timeout_s: float,
            why: str,
            *,
            early_to: SipLeg | None = None,
        ) -> SipLeg | str: ...
