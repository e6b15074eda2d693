"""Wires the parts into one running server: settings in, sockets and timers around the
sans-IO SIP core, graceful shutdown out.

This is the only module that reads clocks for the SIP layer: ``loop.time()`` (monotonic)
for transaction timers and rate windows, ``time.time()`` (wall) for bindings and nonces,
both passed into the core.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tsunagu import __version__
from tsunagu.api import ApiServer, ApiServices, RateLimit, create_app, seed_api_key
from tsunagu.api.users import validate_auth_document
from tsunagu.calls import call_events
from tsunagu.calls.controller import CallController
from tsunagu.calls.webhooks import WebhookClient
from tsunagu.center import Center, build_center
from tsunagu.center_config import CenterConfig
from tsunagu.config_documents import make_validator, whole_picture_problems
from tsunagu.events import EventBus, QueueFigures
from tsunagu.events.webhooks import WebhookDispatcher
from tsunagu.media.engine import LocalMediaEngine, MediaConfig
from tsunagu.settings import Settings
from tsunagu.sip.bindings_store import BindingJournal
from tsunagu.sip.core import Outgoing, SipCore
from tsunagu.sip.digest import DigestAuthenticator
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.guard import SourceGuard
from tsunagu.sip.peer import Peer
from tsunagu.sip.registrar import BindingChange, Registrar
from tsunagu.sip.transport import SipTransport
from tsunagu.store import Store, default_url, open_store

log = logging.getLogger("tsunagu")

HOUSEKEEPING_INTERVAL_S = 1.0
#: The demo configuration's admin key; its use beyond loopback is warned about loudly.
DEMO_API_KEY = "demo-admin-key"
#: Agent presence is checked against SIP and the calls every this many housekeeping ticks.
RECONCILE_EVERY = 5
#: Queue figures are checked every this many ticks and published when they changed.
QUEUE_STATS_EVERY = 2


def _load_secret(data_dir: Path) -> bytes:
    """A per-installation secret for nonces, kept so a restart does not void them all."""
    path = data_dir / "nonce.secret"
    if path.exists():
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    path.touch(mode=0o600)
    path.write_bytes(secret)
    return secret


def _trunk_lookup(center: Center) -> Callable[[str], str | None]:
    """Source address -> the name of the IP-authenticated trunk that allows it."""
    networks = [
        (ipaddress.ip_network(item, strict=False), trunk.name)
        for trunk in center.trunks.values()
        if trunk.kind == "ip"
        for item in trunk.allow
    ]

    def lookup(host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        for network, name in networks:
            if address in network:
                return name
        return None

    return lookup


def _passwords(center: Center) -> dict[str, str]:
    return {agent.id: agent.sip_password for agent in center.settings.agents}


def _hold_music(folder: Path) -> None:
    """A default music-on-hold prompt: a soft two-note chime every two seconds."""
    path = folder / "hold.wav"
    if path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rate = 8000
    t = np.arange(rate * 2) / rate
    tone = np.where(t < 0.4, np.sin(2 * np.pi * 523.25 * t), 0.0)
    tone += np.where((t >= 0.5) & (t < 0.9), np.sin(2 * np.pi * 392.0 * t), 0.0)
    samples = (tone * 0.25 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


class Server:
    def __init__(self, settings: Settings, center: Center | None = None) -> None:
        self.settings = settings
        #: Built from the YAML until :meth:`start` replaces it with the store's (the store is
        #: the source of truth once seeded); swapped again on every live reload.
        self.center = center if center is not None else build_center(settings)
        data_dir = settings.server.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._passwords = _passwords(self.center)
        self._trunk_lookup = _trunk_lookup(self.center)
        self.config = CenterConfig(settings, self.use_center)
        self.journal = BindingJournal(data_dir / "bindings.sqlite3")
        self.registrar = Registrar(settings.sip.registrar, on_change=self._binding_changed)
        self.calls: CallController | None = None
        #: Domain events: the call layer publishes, the API's stream and webhooks subscribe.
        self.events = EventBus()
        self._queue_figures: tuple[QueueFigures, ...] | None = None
        auth = settings.security.auth
        self.core = SipCore(
            settings,
            authenticator=DigestAuthenticator(
                auth.realm,
                self._sip_password,
                algorithms=auth.algorithms,
                nonce_ttl=auth.nonce_ttl_s,
                secret=_load_secret(data_dir),
            ),
            guard=SourceGuard(settings.security.ban),
            registrar=self.registrar,
            trunk_for_source=self._trunk_for,
        )
        self.transport = SipTransport(
            settings.sip.transport, self._on_message, self._on_framing_error
        )
        self.core.on_output = self._send
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._http: ApiServer | None = None
        self._started = time.time()
        self.store: Store | None = None
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        server = self.settings.server
        url = server.database_url or default_url(server.data_dir)
        self.store = await open_store(url, validator=make_validator(validate_auth_document))
        self.use_center(await self.config.load(self.store))
        interrupted = await self.store.history.mark_interrupted_on_startup()
        if interrupted:
            log.warning(
                "calls cut by the last shutdown marked interrupted",
                extra={"interactions": len(interrupted)},
            )
        left_open = await self.store.agent_states.close_open_on_startup(datetime.now(UTC))
        if left_open:
            log.warning(
                "agent states left open by the last shutdown closed as interrupted",
                extra={"intervals": left_open},
            )
        wall = time.time()
        restored = self.registrar.restore(self.journal.load(), wall)
        media = self.settings.media
        prompts = media.prompts_dir or server.data_dir / "prompts"
        if not prompts.is_absolute():
            prompts = self.settings.base_dir / prompts if media.prompts_dir else prompts
        _hold_music(prompts)
        self.media = LocalMediaEngine(
            MediaConfig(
                bind_address=server.bind,
                advertised_address=media.advertised_address,
                port_min=media.rtp_port_min,
                port_max=media.rtp_port_max,
                data_dir=server.data_dir,
                prompt_dir=prompts,
                tts_enabled=media.tts,
            )
        )
        self.webhooks = WebhookClient(user_agent=self.core.server_header)
        self.calls = CallController(
            self.center.settings,
            center=self.center,
            core=self.core,
            registrar=self.registrar,
            media=self.media,
            history=self.store.history,
            webhooks=self.webhooks,
            agent_states=self.store.agent_states,
            events=self.events,
            callback_tasks=self.store.callback_tasks,
        )
        self.core.call_control = self.calls
        self.event_webhooks = WebhookDispatcher(
            self.settings.events.webhooks,
            self.events,
            self.store.dead_letters,
            user_agent=self.core.server_header,
        )
        self.event_webhooks.start()
        await self.transport.start(server.bind, server.sip_port)
        self.calls.local_port = self.transport.local_port
        self.calls.restore_presence()
        await self.calls.restore_callback_tasks()
        self.calls.start_trunks()
        await self._start_api()
        self.store.config.on_change = self.config.changed
        self._housekeeping = asyncio.create_task(self._housekeep())
        log.info(
            "tsunagu ready",
            extra={
                "version": __version__,
                "bind": server.bind,
                "sip_port": self.transport.local_port,
                "http_port": server.http_port,
                "bindings_restored": restored,
                "agents": len(self.center.settings.agents),
                "config_revision": self.config.revision,
            },
        )

    async def stop(self) -> None:
        log.info("shutting down")
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._http is not None:
            await self._http.stop()
        if self.calls is not None:
            await self.calls.stop_trunks()
            await self.calls.close()
            await self.media.close()
            await self.webhooks.close()
            await self.event_webhooks.close()  # before the store: it keeps what is unsent
        await self.transport.stop()
        self.journal.close()
        if self.store is not None:
            try:
                await self.store.agent_states.close_all(datetime.now(UTC))
            except Exception:
                log.exception("could not close the agent state intervals")
            await self.store.close()
        log.info("stopped", extra={"bindings_saved": self.registrar.count(time.time())})
        self.stopped.set()

    async def _start_api(self) -> None:
        assert self.store is not None and self.calls is not None
        server = self.settings.server
        for key in self.settings.api.keys:
            await seed_api_key(self.store, key.name, key.token, key.role)
            if key.token == DEMO_API_KEY and server.bind not in ("127.0.0.1", "::1"):
                log.warning(
                    "THE DEMO API KEY IS ENABLED ON A NON-LOOPBACK ADDRESS: anyone who can "
                    "reach this server can administer it; remove api.keys from the config",
                    extra={"bind": server.bind},
                )
        calls = self.calls
        store = self.store

        async def recording_path(interaction_id: str) -> Path | None:
            record = await store.history.get(interaction_id)
            if record is None:
                return None
            paths = [
                r.get("path") for r in record.interaction.recordings if r.get("kind") == "call"
            ]
            return Path(str(paths[0])) if paths and paths[0] else None

        app = create_app(
            ApiServices(
                store=store,
                health=self.health,
                agents=calls.agents_view,
                set_agent_state=calls.set_agent_state,
                calls=calls.calls_view,
                hangup=calls.hangup_call,
                set_overflow=calls.set_overflow,
                transfer=calls.transfer_call,
                recording_path=recording_path,
                webhooks=self.event_webhooks.status,
                redeliver=self.event_webhooks.redeliver,
                cancel_callback=calls.cancel_callback,
                events=self.events,
                audit_path=server.data_dir / "audit.jsonl",
                check_center=whole_picture_problems,
                rate_limit=RateLimit(
                    self.settings.api.rate_limit.per_second, self.settings.api.rate_limit.burst
                ),
            )
        )
        self._http = ApiServer(app, server.bind, server.http_port)
        await self._http.start()

    def use_center(self, center: Center) -> list[str]:
        """Route new calls, authenticate phones and recognise trunks with ``center``;
        return what waits for a restart (docs/ARCHITECTURE.md "Live configuration")."""
        self.center = center
        self._passwords = _passwords(center)
        self._trunk_lookup = _trunk_lookup(center)
        if self.calls is None:
            return []
        return self.calls.use_center(center)

    def _sip_password(self, user: str) -> str | None:
        """The digest password of ``user`` in the *current* center (a live reload changes
        it without rebuilding the authenticator)."""
        return self._passwords.get(user)

    def _trunk_for(self, host: str) -> str | None:
        return self._trunk_lookup(host)

    def _binding_changed(self, change: BindingChange) -> None:
        self.journal.record(change)
        if self.calls is not None:
            self.calls.on_binding_change(change)

    # -- SIP plumbing ---------------------------------------------------------------------
    def _on_message(self, data: bytes, peer: Peer) -> None:
        now = asyncio.get_running_loop().time()
        self._send(self.core.receive(data, peer, now, time.time()))

    def _send(self, outputs: list[Outgoing]) -> None:
        """Put the core's outputs on the wire and re-arm its timer (it may be earlier now)."""
        for out in outputs:
            self.transport.send(out.peer, out.data)
        self._schedule()

    def _on_framing_error(self, exc: SipParseError, data: bytes, peer: Peer) -> bytes | None:
        del data
        return self.core.framing_error(exc, peer, asyncio.get_running_loop().time())

    def _schedule(self) -> None:
        when = self.core.next_timer()
        if when is None or (self._timer_at is not None and self._timer_at <= when):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        now = asyncio.get_running_loop().time()
        self._send(self.core.handle_timer(now))

    async def _housekeep(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            try:
                wall = time.time()
                for change in self.registrar.expire(wall):
                    for binding in change.removed:
                        log.info(
                            "registration expired",
                            extra={"aor": change.aor, "contact": binding.contact},
                        )
                self.journal.flush()
                ticks += 1
                if self.calls is not None and ticks % RECONCILE_EVERY == 0:
                    self.calls.reconcile()
                if self.calls is not None and ticks % QUEUE_STATS_EVERY == 0:
                    self._publish_queue_stats()
            except Exception:
                log.exception("housekeeping failed")
            try:
                await self.config.poll()
            except Exception:
                log.exception("could not check the configuration store for changes")

    def _publish_queue_stats(self) -> None:
        """``queue.stats`` when any queue's figures changed since the last one (the oldest
        wait counts in whole seconds, so a waiting caller makes it change every tick)."""
        assert self.calls is not None
        if not self.events.subscribers:
            return
        event = call_events.queue_stats(self.calls.queue_snapshots())
        if event.queues != self._queue_figures:
            self._queue_figures = event.queues
            self.events.publish(event)

    # -- health (served by the REST API: /health minimal, /api/v1/health in full) --------
    def health(self) -> dict[str, object]:
        wall = time.time()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(wall - self._started, 1),
            "registrations": [
                {
                    "aor": b.aor,
                    "contact": b.contact,
                    "expires_in": b.remaining(wall),
                    "source": f"{b.source_transport.lower()}:{b.source_host}:{b.source_port}",
                    "user_agent": b.user_agent,
                }
                for b in self.registrar.all_bindings(wall)
            ],
            "sip": dict(self.core.stats),
            "tcp_connections": self.transport.tcp_connections,
            "trunks": self.calls.trunk_status() if self.calls is not None else {},
            "banned_sources": [b.source for b in self.core.guard.bans(time.monotonic())],
        }
