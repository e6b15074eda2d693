"""The contact center in the revisioned store, on SQLite and PostgreSQL: applying the demo
configuration (idempotent, dry run writes nothing, the validator refuses bad documents),
seeding from the YAML, the store winning over a different YAML, and live reload that
never swaps in a state that cannot run."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tsunagu.api.users import validate_auth_document
from tsunagu.center import Center
from tsunagu.center_config import SEED_ACTOR, CenterConfig
from tsunagu.config_documents import make_validator, settings_to_documents
from tsunagu.settings import ConfigError, Settings, load_settings
from tsunagu.store import ConfigValidationError, Store, open_store

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture
def demo() -> Settings:
    return load_settings(DEMO)


@pytest.fixture
async def vstore(store_url: str) -> AsyncIterator[Store]:
    """A store with the production validator (YAML models + users/ACL rules)."""
    opened = await open_store(store_url, validator=make_validator(validate_auth_document))
    try:
        yield opened
    finally:
        await opened.close()


async def test_apply_twice_is_one_set_of_revisions_then_none(vstore: Store, demo: Settings) -> None:
    docs = settings_to_documents(demo)
    total = sum(len(entities) for entities in docs.values())
    dry = await vstore.config.apply(docs, "cli:test", dry_run=True)
    assert len(dry.creates) == total and dry.applied_revision is None
    assert await vstore.config.current_revision() == 0
    assert await vstore.config.export() == {}

    first = await vstore.config.apply(docs, "cli:test")
    assert first.applied_revision == total
    second = await vstore.config.apply(copy.deepcopy(docs), "cli:test")
    assert second.empty and second.applied_revision is None
    assert await vstore.config.current_revision() == total
    exported = await vstore.config.export()
    assert {k: v for k, v in exported.items() if v} == {k: v for k, v in docs.items() if v}


async def test_the_store_validator_refuses_a_bad_document_naming_the_field(
    vstore: Store,
) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        await vstore.config.put("agents", "1001", {"sip_password": "short"}, "api:test")
    assert caught.value.problems == [
        "agents/1001: sip_password: String should have at least 8 characters"
    ]
    with pytest.raises(ConfigValidationError) as caught:
        await vstore.config.apply({"queues": {"q": {"strategy": "fastest"}}}, "cli:test")
    assert caught.value.problems[0].startswith("queues/q: strategy:")
    # users keep their own rules through the same hook
    with pytest.raises(ConfigValidationError):
        await vstore.config.put("users", "u", {"role": "admin", "password": "x"}, "api:test")
    assert await vstore.config.current_revision() == 0


class Installed:
    """Stands in for the server's ``use_center``: remembers every center swapped in."""

    def __init__(self) -> None:
        self.centers: list[Center] = []

    def __call__(self, center: Center) -> list[str]:
        self.centers.append(center)
        return []


async def test_yaml_seeds_an_empty_store_then_the_store_wins(
    vstore: Store, demo: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    config = CenterConfig(demo, Installed())
    center = await config.load(vstore)
    assert sorted(center.numbers) == ["+81312345600", "+81312345601", "+81312345678"]
    changes = await vstore.config.changes_since(0)
    assert changes and {c.actor for c in changes} == {SEED_ACTOR}
    seeded = config.revision
    assert seeded == len(changes)

    # A YAML that differs: nothing is written, the store's center is built, a warning.
    changed = demo.model_copy(update={"numbers": demo.numbers[:1]})
    caplog.set_level(logging.WARNING, logger="tsunagu.config")
    center = await CenterConfig(changed, Installed()).load(vstore)
    assert await vstore.config.current_revision() == seeded
    assert len(center.numbers) == 3
    (warning,) = [r for r in caplog.records if "source of truth" in r.getMessage()]
    assert "tsunagu config apply FILE" in warning.getMessage()
    assert warning.differs == "numbers/+81312345600, numbers/+81312345601"  # type: ignore[attr-defined]
    assert "demo-1001" not in caplog.text  # never a secret in the log

    # The same YAML again: no warning.
    caplog.clear()
    await CenterConfig(demo, Installed()).load(vstore)
    assert not [r for r in caplog.records if "source of truth" in r.getMessage()]


async def test_reload_swaps_a_good_state_and_keeps_the_center_on_a_bad_one(
    vstore: Store, demo: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    installed = Installed()
    config = CenterConfig(demo, installed)
    await config.load(vstore)
    await config.poll()
    assert installed.centers == []  # nothing moved

    await vstore.config.put("numbers", "+81312345699", {"flow": "demo-after-hours"}, "api:t")
    await config.poll()
    (center,) = installed.centers
    assert center.numbers["+81312345699"].flow == "demo-after-hours"
    assert config.revision == await vstore.config.current_revision()

    # Users moving the revision rebuild nothing.
    await vstore.config.put("users", "ops", {"role": "supervisor"}, "api:t")
    await config.poll()
    assert len(installed.centers) == 1

    # A state the whole-picture check refuses (written around the API's check).
    caplog.set_level(logging.ERROR, logger="tsunagu.config")
    await vstore.config.put("numbers", "+81312345698", {"flow": "missing"}, "api:t")
    await config.poll()
    assert len(installed.centers) == 1
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.problems == (  # type: ignore[attr-defined]
        "numbers/+81312345698.flow: unknown flow 'missing'; add the flow first"
    )

    # Repaired: the store equals the running center again (nothing to swap); the next
    # good change is swapped in.
    await vstore.config.delete("numbers", "+81312345698", "api:t")
    await config.poll()
    assert len(installed.centers) == 1
    assert config.revision == await vstore.config.current_revision()
    await vstore.config.put("numbers", "+81312345697", {"flow": "demo-menu"}, "api:t")
    await config.poll()
    assert len(installed.centers) == 2
    assert "+81312345697" in installed.centers[-1].numbers


async def test_a_store_that_cannot_run_stops_start_up(vstore: Store, demo: Settings) -> None:
    await CenterConfig(demo, Installed()).load(vstore)
    await vstore.config.delete("flows", "demo-menu", "api:t")
    with pytest.raises(ConfigError) as caught:
        await CenterConfig(demo, Installed()).load(vstore)
    assert ("numbers/+81312345601.flow", "unknown flow 'demo-menu'; add the flow first") in (
        caught.value.problems
    )
