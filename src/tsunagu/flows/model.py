"""Contact flows as versioned YAML documents: the block types and how they are parsed.

A flow is data, not code: ``name``, ``version``, ``start`` and ``blocks`` (id -> block),
each block a pydantic model selected by its ``type``. Parsing checks the *shape* of each
block (field names, types, ranges, template syntax) and reports every problem at once,
naming the block and the field. Whether a flow may be *published* (references resolve,
every outcome leads somewhere, no unguarded cycle) is :mod:`tsunagu.flows.validate`'s
job, so an editor can save an incomplete draft and still get one complete list of what
is missing before publishing.

Attribute templates are deliberately tiny: ``{{name}}`` is replaced by the attribute's
text and nothing else is evaluated (no expressions, no filters, no eval), so a value
coming from a caller's digits or a webhook can never execute anything. In URLs a value is
percent-encoded and may not appear in the scheme or host (no request forgery towards an
internal host chosen by an attribute). Transfer numbers are never templated: a number
built from caller-entered digits is how toll fraud starts.

See docs/FLOWS.md for the reference with examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "BLOCK_TYPES",
    "AttrValue",
    "Block",
    "CheckAttributeBlock",
    "CheckHolidayBlock",
    "CheckHoursBlock",
    "Condition",
    "DisconnectBlock",
    "Exit",
    "Flow",
    "FlowParseError",
    "FlowProblem",
    "GetDigitsBlock",
    "InvokeWebhookBlock",
    "LoopGuardBlock",
    "PlayPromptBlock",
    "SetAttributeBlock",
    "TransferToFlowBlock",
    "TransferToNumberBlock",
    "TransferToQueueBlock",
    "VoicemailBlock",
    "attribute_text",
    "flow_from_mapping",
    "parse_flow",
    "render_json",
    "render_text",
    "render_url",
    "template_names",
]

#: An attribute value: what SetAttribute, GetDigits ``store_as`` and webhooks produce.
AttrValue = str | int | float | bool | None


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One reason a flow cannot be parsed or published; ``block`` is ``""`` for the flow
    itself (e.g. ``start``)."""

    block: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f'block "{self.block}"' if self.block else "flow"
        if self.field:
            where += f" field {self.field!r}"
        return f"{where}: {self.message}; {self.fix}"


class FlowParseError(ValueError):
    """The flow document cannot be parsed (the author's fault); ``problems`` lists all."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("invalid flow:\n" + "\n".join(f"  {p}" for p in problems))


def _bad(message: str, fix: str, field: str = "") -> PydanticCustomError:
    """A validation error that carries its fix (and, from a whole-block check, the field
    it is about) through pydantic to :class:`FlowProblem`."""
    return PydanticCustomError(
        "flow", "{message}", {"message": message, "fix": fix, "field": field}
    )


# --------------------------------------------------------------------------- templates

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}")
_ONLY_PLACEHOLDER = re.compile(r"^\{\{\s*(" + _NAME + r")\s*\}\}$")


def template_names(text: str) -> list[str]:
    """Attribute names used by ``text``'s ``{{name}}`` placeholders, in order."""
    return _PLACEHOLDER.findall(text)


def _check_template(text: str) -> str:
    leftover = _PLACEHOLDER.sub("", text)
    if "{{" in leftover or "}}" in leftover:
        raise _bad(
            f"malformed placeholder in {text!r}",
            "write attributes as {{name}} (letters, digits, _ . -), with nothing else inside",
        )
    return text


def attribute_text(value: AttrValue) -> str:
    """The text form of an attribute, as templates and comparisons see it (JSON-like:
    ``true``/``false``, ``""`` for null)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_text(
    template: str, attributes: Mapping[str, AttrValue], escape: Callable[[str], str] | None = None
) -> str:
    """Replace each ``{{name}}`` with the attribute's text (``""`` when it is missing)."""

    def one(match: re.Match[str]) -> str:
        text = attribute_text(attributes.get(match.group(1)))
        return escape(text) if escape is not None else text

    return _PLACEHOLDER.sub(one, template)


def render_url(template: str, attributes: Mapping[str, AttrValue]) -> str:
    """Render a URL template, percent-encoding every value (RFC 3986 §2.1) so a value
    cannot add path segments, query parameters or fragments."""
    return render_text(template, attributes, lambda text: quote(text, safe=""))


def render_json(value: JsonValue, attributes: Mapping[str, AttrValue]) -> JsonValue:
    """Render a JSON body template: strings are rendered; a string that is exactly one
    placeholder becomes the attribute's raw value, so numbers stay numbers."""
    if isinstance(value, str):
        only = _ONLY_PLACEHOLDER.match(value)
        if only is not None:
            return attributes.get(only.group(1))
        return render_text(value, attributes)
    if isinstance(value, list):
        return [render_json(item, attributes) for item in value]
    if isinstance(value, dict):
        return {key: render_json(item, attributes) for key, item in value.items()}
    return value


def _check_json_templates(value: JsonValue) -> JsonValue:
    if isinstance(value, str):
        _check_template(value)
    elif isinstance(value, list):
        for item in value:
            _check_json_templates(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_json_templates(item)
    return value


# --------------------------------------------------------------------------- field types

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _not_yaml_bool(value: object) -> object:
    """YAML 1.1 reads unquoted yes/no/on/off as booleans; say so instead of "not a string"."""
    if isinstance(value, bool):
        raise _bad(
            f"YAML read this name as {str(value).lower()} (yes/no/on/off are booleans)",
            "quote the name, e.g. 'no', or pick another id",
        )
    return value


BlockId = Annotated[str, Field(pattern=_ID_PATTERN)]
#: A reference to another block of the same flow.
BlockRef = Annotated[str, Field(pattern=_ID_PATTERN), BeforeValidator(_not_yaml_bool)]
#: A queue, hours, calendar or flow name.
ObjectName = Annotated[str, Field(pattern=_ID_PATTERN)]
AttrName = Annotated[str, Field(pattern="^" + _NAME + "$", max_length=64)]
TemplateText = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_check_template)]
TemplateValue = Annotated[str, Field(max_length=2000), AfterValidator(_check_template)]


def _check_prompt_name(name: str) -> str:
    if ".." in name.split("/") or name.startswith("/"):
        raise _bad(
            f"prompt {name!r} leaves the prompt directory",
            "name a prompt file, e.g. 'greeting.wav'",
        )
    return name


PromptName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$"),
    AfterValidator(_check_prompt_name),
]
#: A dialable number in national (0312345678) or E.164 (+81312345678) form.
PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{2,20}$")]


def _digit_keys(value: object) -> object:
    """YAML reads ``1:`` as an int; accept single digits, refuse the rest (``012`` would
    have been read as octal 10, so a multi-digit key must be quoted)."""
    if not isinstance(value, dict):
        return value
    out: dict[object, object] = {}
    for key, target in value.items():
        if isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key <= 9:
                raise _bad(
                    f"branch key {key} was read as a number",
                    f"quote multi-digit keys so leading zeros survive, e.g. '{key}':",
                )
            out[str(key)] = target
        else:
            out[key] = target
    return out


AttrPrefix = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_.-]*)?$", max_length=32)]
DigitKey = Annotated[str, Field(pattern=r"^[0-9*#]{1,32}$")]


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class Exit:
    """One way out of a block: the field that holds it, its target (``None`` when not
    set), whether publishing requires it, and what the outcome means (for messages)."""

    field: str
    target: str | None
    required: bool
    meaning: str


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: Blocks that end this flow's part of the call (no exit is needed).
    terminal: ClassVar[bool] = False
    description: str = ""

    def exits(self) -> tuple[Exit, ...]:
        return ()


class _Spoken(_Block):
    """Something said to the caller: a recorded ``prompt`` file or TTS ``text``."""

    prompt: PromptName | None = None
    text: TemplateText | None = None
    language: Literal["ja", "en"] = "ja"

    def _require_one_prompt(self, optional: bool) -> None:
        if self.prompt is not None and self.text is not None:
            raise _bad(
                "both 'prompt' and 'text' are set", "keep one: a prompt file or TTS text", "prompt"
            )
        if not optional and self.prompt is None and self.text is None:
            raise _bad("nothing to say", "set 'prompt' (a prompt file) or 'text' (TTS)", "prompt")


class PlayPromptBlock(_Spoken):
    type: Literal["PlayPrompt"]
    #: Whether a DTMF digit stops the prompt early.
    barge_in: bool = False
    next: BlockRef | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> PlayPromptBlock:
        self._require_one_prompt(optional=False)
        return self

    def exits(self) -> tuple[Exit, ...]:
        return (Exit("next", self.next, True, "after the prompt has played"),)


class GetDigitsBlock(_Spoken):
    """A menu or a data entry. Input not in ``branches`` goes to ``next`` when set (any
    input accepted), otherwise it is invalid: the prompt is repeated up to ``retries``
    more times, then ``invalid`` (or ``timeout`` when nothing was pressed) is taken."""

    type: Literal["GetDigits"]
    max_digits: Annotated[StrictInt, Field(ge=1, le=32)] = 1
    timeout_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=120)] = 5
    retries: Annotated[StrictInt, Field(ge=0, le=10)] = 2
    terminator: Literal["#", "*"] | None = "#"
    branches: Annotated[dict[DigitKey, BlockRef], BeforeValidator(_digit_keys)] = Field(
        default_factory=dict
    )
    next: BlockRef | None = None
    invalid: BlockRef | None = None
    timeout: BlockRef | None = None
    store_as: AttrName | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GetDigitsBlock:
        self._require_one_prompt(optional=False)
        for key in self.branches:
            if len(key) > self.max_digits:
                raise _bad(
                    f"branch {key!r} is longer than max_digits ({self.max_digits})",
                    f"raise max_digits to {len(key)} or shorten the key",
                    f"branches.{key}",
                )
            if self.terminator is not None and self.terminator in key:
                raise _bad(
                    f"branch {key!r} contains the terminator {self.terminator!r}",
                    "change the terminator or the key",
                    f"branches.{key}",
                )
        return self

    def exits(self) -> tuple[Exit, ...]:
        found = [
            Exit(f"branches.{k}", t, True, f"when the caller enters {k}")
            for k, t in self.branches.items()
        ]
        if not self.branches and self.next is None:
            found.append(Exit("branches", None, True, "for the digits the caller enters"))
        found.append(Exit("next", self.next, False, "for any other input"))
        found.append(
            Exit("invalid", self.invalid, self.next is None, "after invalid input and all retries")
        )
        found.append(
            Exit(
                "timeout", self.timeout, True, "when the caller presses nothing, after all retries"
            )
        )
        return tuple(found)


class CheckHoursBlock(_Block):
    type: Literal["CheckHours"]
    hours: ObjectName
    open: BlockRef | None = None
    closed: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (
            Exit("open", self.open, True, "when the hours are open"),
            Exit("closed", self.closed, True, "when the hours are closed"),
        )


class CheckHolidayBlock(_Block):
    type: Literal["CheckHoliday"]
    calendar: ObjectName
    holiday: BlockRef | None = None
    not_holiday: BlockRef | None = None
    #: Attribute that receives the holiday's name on a holiday (e.g. for TTS).
    store_name_as: AttrName | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (
            Exit("holiday", self.holiday, True, "on a holiday or closure day"),
            Exit("not_holiday", self.not_holiday, True, "on any other day"),
        )


def _check_webhook_url(url: str) -> str:
    match = re.match(r"^(https?)://([^/?#]*)", url)
    if match is None:
        raise _bad(
            f"url {url!r} is not http(s)",
            "write an absolute URL such as 'https://crm.example/lookup'",
        )
    if "{{" in match.group(2):
        raise _bad(
            "the host part of the url contains a placeholder",
            "fix the host; put attributes in the path or query only",
        )
    return _check_template(url)


class InvokeWebhookBlock(_Block):
    """An HTTP call. A 2xx JSON object response becomes attributes; anything else (non-2xx,
    not an object, a timeout, a connection error) takes ``error`` and raises an event."""

    type: Literal["InvokeWebhook"]
    url: Annotated[str, Field(max_length=2000), AfterValidator(_check_webhook_url)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    timeout_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=30)] = 3
    headers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")], TemplateText] = Field(
        default_factory=dict
    )
    body: Annotated[dict[str, JsonValue], AfterValidator(_check_json_templates)] | None = None
    #: Prefix added to every attribute taken from the response (e.g. ``crm.``).
    store_prefix: AttrPrefix = ""
    next: BlockRef | None = None
    error: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (
            Exit("next", self.next, True, "after a successful response"),
            Exit("error", self.error, True, "when the call fails or times out"),
        )


_Op = Literal["equals", "not_equals", "contains", "exists", "greater", "less"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: _Op
    value: StrictInt | StrictFloat | bool | TemplateValue | None = None
    next: BlockRef | None = None

    @model_validator(mode="after")
    def _value_given(self) -> Condition:
        if self.op != "exists" and self.value is None:
            raise _bad(f"op {self.op!r} needs a value", "add 'value:'", "value")
        if self.op in ("greater", "less") and isinstance(self.value, bool):
            raise _bad(f"op {self.op!r} compares numbers", "give a number as value", "value")
        return self


class CheckAttributeBlock(_Block):
    """Tests one attribute against conditions in order; the first that holds wins."""

    type: Literal["CheckAttribute"]
    attribute: AttrName
    conditions: tuple[Condition, ...] = ()
    default: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        found = [
            Exit(f"conditions[{i}].next", c.next, True, f"when the attribute {c.op} {c.value!r}")
            for i, c in enumerate(self.conditions)
        ]
        found.append(Exit("default", self.default, True, "when no condition holds"))
        return tuple(found)


def _check_set_values(values: dict[str, AttrValue]) -> dict[str, AttrValue]:
    for value in values.values():
        if isinstance(value, str):
            _check_template(value)
    return values


class SetAttributeBlock(_Block):
    type: Literal["SetAttribute"]
    attributes: Annotated[
        dict[AttrName, StrictInt | StrictFloat | bool | str | None],
        Field(min_length=1),
        AfterValidator(_check_set_values),
    ]
    next: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (Exit("next", self.next, True, "after setting the attributes"),)


class TransferToQueueBlock(_Block):
    """Hands the call to the ACD. ``on_failure`` is taken when the queue refuses (full,
    closed, no agents logged in); without it the call is disconnected."""

    type: Literal["TransferToQueue"]
    queue: ObjectName
    on_failure: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (Exit("on_failure", self.on_failure, False, "when the queue refuses the call"),)


class TransferToNumberBlock(_Block):
    """Calls an outside number and bridges the caller to it. ``caller_id`` is the number
    shown to the callee (REQUIREMENTS §4: the 050 number, not the caller's 03 number)."""

    type: Literal["TransferToNumber"]
    number: PhoneNumber
    caller_id: PhoneNumber | None = None
    timeout_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=300)] = 30
    on_failure: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (Exit("on_failure", self.on_failure, False, "when the transfer fails"),)


class TransferToFlowBlock(_Block):
    terminal: ClassVar[bool] = True
    type: Literal["TransferToFlow"]
    flow: ObjectName


class VoicemailBlock(_Spoken):
    """Records a message and leaves a callback task; then ``next``, or disconnect.

    ``queue``: whose agents call back. Without it the task goes to the queue the caller
    last waited in or tried (a queue's fallback flow, or a ``TransferToQueue``'s
    ``on_failure``, offering voicemail needs no queue of its own);
    a caller who never queued leaves an unassigned task that supervisors see and cancel.
    """

    type: Literal["Voicemail"]
    max_seconds: Annotated[StrictInt, Field(ge=1, le=600)] = 120
    queue: ObjectName | None = None
    next: BlockRef | None = None

    @model_validator(mode="after")
    def _at_most_one_prompt(self) -> VoicemailBlock:
        self._require_one_prompt(optional=True)
        return self

    def exits(self) -> tuple[Exit, ...]:
        return (Exit("next", self.next, False, "after the message is recorded"),)


class DisconnectBlock(_Block):
    terminal: ClassVar[bool] = True
    type: Literal["Disconnect"]
    reason: Annotated[str, Field(pattern=r"^[a-z0-9_:-]{1,64}$")] = "disconnect"


class LoopGuardBlock(_Block):
    """Counts passes per call: passes 1..max_passes go to ``next``, later ones to
    ``exceeded``. The only way a cycle may be published (see validate)."""

    type: Literal["LoopGuard"]
    max_passes: Annotated[StrictInt, Field(ge=1, le=100)]
    next: BlockRef | None = None
    exceeded: BlockRef | None = None

    def exits(self) -> tuple[Exit, ...]:
        return (
            Exit("next", self.next, True, "while passes remain"),
            Exit("exceeded", self.exceeded, True, "once max_passes is used up"),
        )


Block = Annotated[
    PlayPromptBlock
    | GetDigitsBlock
    | CheckHoursBlock
    | CheckHolidayBlock
    | InvokeWebhookBlock
    | CheckAttributeBlock
    | SetAttributeBlock
    | TransferToQueueBlock
    | TransferToNumberBlock
    | TransferToFlowBlock
    | VoicemailBlock
    | DisconnectBlock
    | LoopGuardBlock,
    Field(discriminator="type"),
]

#: YAML ``type`` -> block class.
BLOCK_TYPES: dict[str, type[_Block]] = {
    "PlayPrompt": PlayPromptBlock,
    "GetDigits": GetDigitsBlock,
    "CheckHours": CheckHoursBlock,
    "CheckHoliday": CheckHolidayBlock,
    "InvokeWebhook": InvokeWebhookBlock,
    "CheckAttribute": CheckAttributeBlock,
    "SetAttribute": SetAttributeBlock,
    "TransferToQueue": TransferToQueueBlock,
    "TransferToNumber": TransferToNumberBlock,
    "TransferToFlow": TransferToFlowBlock,
    "Voicemail": VoicemailBlock,
    "Disconnect": DisconnectBlock,
    "LoopGuard": LoopGuardBlock,
}


# --------------------------------------------------------------------------- flow


class Flow(BaseModel):
    """One version of a contact flow. Immutable: publishing makes a new object, and a
    call in progress keeps the object it started with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ObjectName
    version: Annotated[StrictInt, Field(ge=1)]
    start: BlockRef
    description: str = ""
    blocks: Annotated[dict[BlockId, Block], Field(min_length=1, max_length=500)]

    @field_validator("blocks", mode="before")
    @classmethod
    def _blocks_is_mapping(cls, value: object) -> object:
        if isinstance(value, list):
            raise _bad("blocks is a list", "write blocks as a mapping: block id -> block")
        if isinstance(value, dict):
            for key in value:
                _not_yaml_bool(key)
        return value

    @classmethod
    def from_yaml(cls, text: str) -> Flow:
        return parse_flow(text)

    def to_yaml(self) -> str:
        """The YAML form, defaults left out (``parse_flow(flow.to_yaml()) == flow``)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data["blocks"] = {  # type first: it is what a reader looks for
            block_id: {"type": block["type"], **block} for block_id, block in data["blocks"].items()
        }
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --------------------------------------------------------------------------- parsing


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"key {key!r} appears twice (line {line})")
        self.key = key
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: plain YAML keeps the last one, which would
    silently drop a block with a repeated id."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            continue  # unhashable keys are refused by construct_mapping below
        if key in seen:
            raise _DuplicateKeyError(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_flow(text: str) -> Flow:
    """Parse a flow from YAML text; :class:`FlowParseError` lists every problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise FlowParseError(
            [FlowProblem("", "", str(exc), "give every block and field a distinct name")]
        ) from None
    except yaml.YAMLError as exc:
        raise FlowParseError(
            [FlowProblem("", "", f"not valid YAML: {exc}", "fix the YAML syntax at the line shown")]
        ) from None
    if not isinstance(data, dict):
        raise FlowParseError(
            [
                FlowProblem(
                    "",
                    "",
                    "the document is not a mapping",
                    "start with name:, version:, start:, blocks:",
                )
            ]
        )
    return flow_from_mapping(data)


def flow_from_mapping(data: Mapping[str, Any]) -> Flow:
    """Build a flow from already-decoded data (JSON from the API, YAML from a file)."""
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowParseError([_problem(err) for err in exc.errors()]) from None


def _problem(err: Any) -> FlowProblem:
    loc = [str(part) for part in err["loc"]]
    block = ""
    block_type: str | None = None
    if len(loc) >= 2 and loc[0] == "blocks":
        block = loc[1]
        loc = loc[2:]
        if loc and loc[0] in BLOCK_TYPES:
            block_type = loc[0]
            loc = loc[1:]
    loc = [part for part in loc if part != "[key]"]
    field = ".".join(loc)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "flow":
        if ctx.get("field"):
            field = ".".join(p for p in (field, str(ctx["field"])) if p)
        return FlowProblem(block, field, str(ctx["message"]), str(ctx["fix"]))
    if kind == "missing":
        fix = f"add '{field}'"
    elif kind == "extra_forbidden":
        fix = f"remove '{field}' or fix its spelling"
        if block_type is not None and "." not in field:
            fields = BLOCK_TYPES[block_type].model_fields.items()
            allowed = sorted((f.alias or name for name, f in fields), key=lambda n: n != "type")
            fix += f"; {block_type} accepts: {', '.join(allowed)}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        field = "type"
        message = (
            f"unknown block type {ctx['tag']!r}" if "tag" in ctx else "the block has no 'type'"
        )
        fix = f"set type to one of: {', '.join(BLOCK_TYPES)}"
    elif kind == "string_pattern_mismatch":
        fix = (
            "use letters, digits, '_', '.' or '-' "
            "(digits, * and # for branch keys; 0-9 and a leading + for numbers)"
        )
    elif kind == "literal_error":
        fix = "use one of the values listed"
    else:
        fix = "correct the value"
    return FlowProblem(block, field, message, fix)
