"""Typed settings, read from one YAML file and validated once at start-up.

Why one validation pass: a contact center that starts with a half-understood config fails
later, during a call, in a way that is hard to trace. Every problem is reported up front
with the dotted path of the field (``sip.timers.t1_ms``) and what would be accepted, and
start-up stops (REQUIREMENTS "bad config is refused with a message that names the field").

Sections are added by the features that read them; unknown keys are refused so a typo
(``sip_pasword``) cannot silently disable a setting.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tsunagu.calendar.holidays import HolidayCalendarConfig
from tsunagu.calendar.hours import HoursConfig
from tsunagu.events.types import EVENT_TYPES


def _networks(value: list[str]) -> list[str]:
    """Every item an address or CIDR network (for ``allow`` lists)."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an address or CIDR network") from exc
    return value


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(field path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid configuration"]
        lines += [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Where Tsunagu listens and keeps its data."""

    bind: str = "127.0.0.1"
    sip_port: Annotated[int, Field(ge=1, le=65535)] = 5060
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    data_dir: Path = Path("./var")
    #: The SIP domain agents register under (the host part of their address of record).
    #: Requests for any other domain are still accepted when the user part matches an
    #: agent, because softphones are often configured with an IP address instead.
    domain: str = "tsunagu.local"
    #: SQLAlchemy URL of the store; the default is SQLite in ``data_dir``. For PostgreSQL:
    #: ``postgresql://user:password@host/dbname``.
    database_url: Annotated[str | None, Field(repr=False)] = None

    @field_validator("bind")
    @classmethod
    def _bind_is_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(
                f"must be an IP address such as 127.0.0.1 or 0.0.0.0, not {value!r}"
            ) from exc
        return value


class TimerSettings(_Section):
    """RFC 3261 §17.1.1.1 / Table 4 base timers, in milliseconds."""

    t1_ms: Annotated[int, Field(ge=50, le=10_000)] = 500
    t2_ms: Annotated[int, Field(ge=500, le=60_000)] = 4_000
    t4_ms: Annotated[int, Field(ge=500, le=60_000)] = 5_000

    @model_validator(mode="after")
    def _t2_not_below_t1(self) -> TimerSettings:
        if self.t2_ms < self.t1_ms:
            raise ValueError("t2_ms must be at least t1_ms (T2 caps the doubling of T1, §17.1.2.2)")
        return self


class RegistrarSettings(_Section):
    """RFC 3261 §10.3: expiry limits for bindings."""

    min_expires: Annotated[int, Field(ge=1, le=86_400)] = 60
    max_expires: Annotated[int, Field(ge=1, le=604_800)] = 3_600
    default_expires: Annotated[int, Field(ge=1, le=604_800)] = 3_600
    max_contacts_per_aor: Annotated[int, Field(ge=1, le=100)] = 10


class TransportSettings(_Section):
    max_message_bytes: Annotated[int, Field(ge=1_500, le=1_048_576)] = 65_535
    tcp_max_connections: Annotated[int, Field(ge=1, le=100_000)] = 2_048
    tcp_max_connections_per_ip: Annotated[int, Field(ge=1, le=10_000)] = 64
    tcp_idle_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0


class SipSettings(_Section):
    timers: TimerSettings = TimerSettings()
    registrar: RegistrarSettings = RegistrarSettings()
    transport: TransportSettings = TransportSettings()
    user_agent: str = "Tsunagu"


class AuthSettings(_Section):
    """Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)."""

    realm: str = "tsunagu"
    #: Offered in this order; RFC 8760 §2.4 says to offer SHA-256 before MD5.
    algorithms: list[Literal["SHA-256", "MD5"]] = ["SHA-256", "MD5"]
    nonce_ttl_s: Annotated[int, Field(ge=5, le=3_600)] = 300
    #: User-Agent substrings (case-insensitive) of clients that fail on any challenge
    #: whose algorithm they lack (instead of skipping it): they get the MD5 challenge only.
    md5_only_user_agents: list[str] = ["baresip v1.", "baresip v0."]

    @field_validator("algorithms")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one of SHA-256, MD5")
        if len(set(value)) != len(value):
            raise ValueError("each algorithm at most once")
        return value


class BanSettings(_Section):
    """Per-source defence, in the spirit of Kamailio's pike module and fail2ban's SIP jails."""

    enabled: bool = True
    auth_failures: Annotated[int, Field(ge=1, le=10_000)] = 10
    auth_failure_window_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    requests_per_window: Annotated[int, Field(ge=1, le=1_000_000)] = 400
    request_window_s: Annotated[float, Field(gt=0, le=3_600)] = 2.0
    ban_s: Annotated[float, Field(gt=0, le=604_800)] = 600.0
    #: Sources that are never banned (monitoring, load balancers); CIDR or single address.
    allow: list[str] = []
    #: Requests whose User-Agent contains one of these (case-insensitive) are dropped
    #: without an answer: answering tells a scanner that a SIP server lives here.
    scanner_user_agents: list[str] = [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "sip-scan",
        "sipsak",
        "iWar",
        "sundayddr",
        "VaxSIPUserAgent",
        "pplsip",
        "SIPBomber",
    ]

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)


class SecuritySettings(_Section):
    auth: AuthSettings = AuthSettings()
    ban: BanSettings = BanSettings()


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class AgentSettings(_Section):
    """An agent and the SIP credentials their phone registers with."""

    id: Annotated[str, Field(pattern=r"^[0-9A-Za-z_.\-]{1,32}$")]
    name: str = ""
    sip_password: Annotated[str, Field(min_length=8, repr=False)]
    team: str | None = None
    #: Skill name -> level (higher is better), for skills-based queues.
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = {}


class TeamSettings(_Section):
    id: Annotated[str, Field(pattern=_NAME)]
    name: str = ""


class TrunkSettings(_Section):
    """A carrier trunk.

    ``ip`` trunks are trusted by source address (``allow``); ``register`` trunks are
    accounts at the carrier that Tsunagu registers to with ``username``/``password``.
    Outbound calls go to ``host``:``port``. ``number_format`` is how this carrier wants
    numbers in the Request-URI, From and P-Asserted-Identity.
    """

    name: Annotated[str, Field(pattern=_NAME)]
    kind: Literal["ip", "register"] = "ip"
    allow: list[str] = []
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 5060
    transport: Literal["udp", "tcp"] = "udp"
    username: str | None = None
    password: Annotated[str | None, Field(repr=False)] = None
    register_expires: Annotated[int, Field(ge=60, le=86_400)] = 600
    caller_id: str | None = None
    number_format: Literal["national", "e164"] = "national"
    max_channels: Annotated[int, Field(ge=1, le=100_000)] = 100

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @model_validator(mode="after")
    def _kind_fields(self) -> TrunkSettings:
        if self.kind == "ip" and not self.allow:
            raise ValueError("an ip trunk needs 'allow': the carrier's source addresses")
        if self.kind == "register" and not (self.username and self.password and self.host):
            raise ValueError("a register trunk needs 'host', 'username' and 'password'")
        return self


class NumberSettings(_Section):
    """A DID: calls to ``number`` run ``flow``."""

    number: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
    flow: str
    name: str = ""


class FlowFileSettings(_Section):
    """A contact flow (docs/FLOWS.md): a ``file`` path relative to the config file, or the
    flow document itself under ``flow`` (what ``tsunagu config export`` writes, so an
    exported file needs no flow files beside it)."""

    file: Path | None = None
    flow: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FlowFileSettings:
        if (self.file is None) == (self.flow is None):
            raise ValueError("give either 'file' (a flow file) or 'flow' (the flow itself)")
        return self


class OverflowSettings(_Section):
    id: Annotated[str, Field(pattern=_NAME)]
    agents: list[str] = []
    teams: list[str] = []
    auto: bool = True
    waiting_at_least: Annotated[int, Field(ge=1)] | None = None
    longest_wait_at_least_s: Annotated[float, Field(gt=0)] | None = None
    service_level_below: Annotated[float, Field(gt=0, le=1)] | None = None
    #: The group stays at least this long once it joined (hysteresis against flapping).
    min_active_s: Annotated[float, Field(ge=0)] = 60.0


class QueueSettings(_Section):
    """A queue (see docs/CONFIG.md for strategies)."""

    id: Annotated[str, Field(pattern=_NAME)]
    strategy: Literal[
        "longest_idle", "round_robin", "ring_all", "skills_based", "preferred_agent"
    ] = "longest_idle"
    agents: list[str] = []
    teams: list[str] = []
    ring_timeout_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    max_wait_s: Annotated[float, Field(gt=0)] | None = None
    #: Flow the caller goes to when ``max_wait_s`` passes (or nobody can take calls).
    fallback_flow: str | None = None
    wrap_up_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    skill: str | None = None
    min_skill_level: Annotated[int, Field(ge=1, le=10)] = 1
    rep_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    team_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    sl_threshold_s: Annotated[float, Field(gt=0)] = 20.0
    #: Seconds between "you are caller number N" announcements (0: never).
    announce_every_s: Annotated[float, Field(ge=0)] = 30.0
    #: Language of those announcements (TTS): ``ja`` or ``en``.
    announce_language: Literal["ja", "en"] = "ja"
    #: The announcements offer "press 1 to be called back" (the caller keeps their place).
    offer_callback: bool = False
    #: Music on hold: a WAV file (relative to the config file) or empty for a tone.
    music_on_hold: Path | None = None
    caller_id: str | None = None
    #: Voicemail callback tasks of this queue: calls to the customer before the task is
    #: failed, and the wait between two unanswered calls (docs/FLOWS.md "Voicemail").
    callback_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    callback_retry_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    overflow: list[OverflowSettings] = []
    #: How often overflow thresholds are checked.
    overflow_check_s: Annotated[float, Field(gt=0, le=600)] = 5.0


class CustomerSettings(_Section):
    """A customer's number and their assigned rep (preferred-agent routing, §3)."""

    number: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
    agent: str
    name: str = ""


class MediaSettings(_Section):
    """RTP media handled in-process (docs/MEDIA.md)."""

    rtp_port_min: Annotated[int, Field(ge=1024, le=65534)] = 16384
    rtp_port_max: Annotated[int, Field(ge=1025, le=65535)] = 32767
    #: Address put in SDP ``c=`` lines; defaults to ``server.bind``.
    advertised_address: str | None = None
    #: Directory of recorded prompts (relative prompt names in flows start here).
    prompts_dir: Path | None = None
    tts: bool = True

    @model_validator(mode="after")
    def _range(self) -> MediaSettings:
        if self.rtp_port_max - self.rtp_port_min < 4:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 4")
        return self


class CallSettings(_Section):
    """Limits every call obeys, whatever its flow says."""

    #: A conversation is ended (BYE to both sides) after this long: a forgotten line or a
    #: looping peer must not hold a channel forever.
    max_duration_s: Annotated[float, Field(gt=0, le=86_400)] = 4 * 3600.0


class ApiKeySettings(_Section):
    """An API key seeded at start-up (for integrations and the demo)."""

    name: Annotated[str, Field(pattern=_NAME)]
    token: Annotated[str, Field(min_length=12, repr=False)]
    role: Literal["admin", "supervisor", "agent"] = "admin"


class ApiRateLimitSettings(_Section):
    """The per-user (or per-integration key) request budget: a token bucket of ``burst``
    requests refilled at ``per_second``. Raise it for a CRM that syncs in bulk; over it a
    client gets 429 with Retry-After."""

    per_second: Annotated[float, Field(gt=0, le=100_000)] = 20.0
    burst: Annotated[int, Field(ge=1, le=1_000_000)] = 100


class ApiSettings(_Section):
    keys: list[ApiKeySettings] = []
    rate_limit: ApiRateLimitSettings = ApiRateLimitSettings()


class WebhookSettings(_Section):
    """An outbound webhook: events are POSTed to ``url`` as JSON, signed with ``secret``
    (docs/API.md "Webhooks"), retried with backoff, and kept as dead letters when they
    cannot be delivered."""

    name: Annotated[str, Field(pattern=_NAME)]
    url: str
    #: The HMAC key receivers verify ``X-Tsunagu-Signature`` with. Never logged or shown.
    secret: Annotated[str, Field(min_length=16, repr=False)]
    #: Event types to send (``call.offered``...), or ``"*"`` for all.
    events: list[str] = ["*"]
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    #: A delivery not done this long after the event is dead (even with attempts left).
    max_age_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 86_400.0
    #: First retry after about this long; each retry waits up to twice as long.
    backoff_base_s: Annotated[float, Field(gt=0, le=3_600)] = 2.0
    backoff_max_s: Annotated[float, Field(gt=0, le=86_400)] = 3_600.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, not {value!r}")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('list at least one event type, or "*" for all')
        unknown = [v for v in value if v != "*" and v not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(map(repr, unknown))}; "
                f'use "*" or any of {", ".join(sorted(EVENT_TYPES))}'
            )
        return value

    @model_validator(mode="after")
    def _backoff(self) -> WebhookSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self


class EventsSettings(_Section):
    webhooks: list[WebhookSettings] = []

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, value: list[WebhookSettings]) -> list[WebhookSettings]:
        names = [w.name for w in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"webhook name(s) {', '.join(twice)} listed twice; names are unique")
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    sip: SipSettings = SipSettings()
    security: SecuritySettings = SecuritySettings()
    media: MediaSettings = MediaSettings()
    calls: CallSettings = CallSettings()
    api: ApiSettings = ApiSettings()
    events: EventsSettings = EventsSettings()
    logging: LoggingSettings = LoggingSettings()
    agents: list[AgentSettings] = []
    teams: list[TeamSettings] = []
    trunks: list[TrunkSettings] = []
    numbers: list[NumberSettings] = []
    flows: list[FlowFileSettings] = []
    queues: list[QueueSettings] = []
    hours: list[HoursConfig] = []
    calendars: list[HolidayCalendarConfig] = []
    customers: list[CustomerSettings] = []
    #: Directory of the config file; relative paths in it (flows, prompts) start here.
    base_dir: Path = Path()

    @field_validator("agents")
    @classmethod
    def _unique_ids(cls, value: list[AgentSettings]) -> list[AgentSettings]:
        seen: set[str] = set()
        for agent in value:
            if agent.id in seen:
                raise ValueError(f"agent id {agent.id!r} is listed twice; ids must be unique")
            seen.add(agent.id)
        return value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown setting; check the spelling against docs/CONFIG.md"
    if err["type"] == "missing":
        return "required; add it"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, message)`` for each error of a settings model, worded as at start-up."""
    return [(_location(e["loc"]), _explain(dict(e))) for e in exc.errors()]


def parse_settings(data: object, source: str = "<config>") -> Settings:
    """Validate already-loaded YAML data, raising :class:`ConfigError` with every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "must be a mapping of sections")])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc)) from None


def load_settings(path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``path`` and apply command-line ``overrides`` for the ``server`` section."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {exc}")]) from None
    if overrides:
        if data is None:
            data = {}
        if isinstance(data, dict):
            server = dict(data.get("server") or {})
            server.update({k: v for k, v in overrides.items() if v is not None})
            data["server"] = server
    if isinstance(data, dict):
        data.setdefault("base_dir", str(path.resolve().parent))
    return parse_settings(data, str(path))
