"""Swapping the running center: what reaches the ACD at once, and what is reported as
waiting for a restart (one layer: the controller is a stand-in holding the real ACD)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from tsunagu.acd.engine import AcdEngine
from tsunagu.acd.queues import UnknownQueueError
from tsunagu.calls.center_swap import swap_center
from tsunagu.calls.controller import CallController
from tsunagu.center import Center
from tsunagu.config_documents import center_from_documents, settings_to_documents
from tsunagu.settings import Settings, load_settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@dataclass
class Controller:
    center: Center
    settings: Settings
    acd: AcdEngine
    agent_ids: set[str] = field(default_factory=set)


@pytest.fixture
def demo() -> tuple[Settings, dict[str, Any]]:
    settings = load_settings(DEMO)
    return settings, settings_to_documents(settings)


def running(settings: Settings, docs: dict[str, Any]) -> Controller:
    center = center_from_documents(settings, docs)
    return Controller(
        center, center.settings, center.build_acd(0.0), {a.id for a in center.settings.agents}
    )


def swap(controller: Controller, settings: Settings, docs: dict[str, Any]) -> list[str]:
    new = center_from_documents(settings, docs)
    return swap_center(cast(CallController, controller), new, 1.0)


def test_additions_reach_the_acd_at_once(demo: tuple[Settings, dict[str, Any]]) -> None:
    settings, docs = demo
    controller = running(settings, docs)
    new = copy.deepcopy(docs)
    new["teams"]["vip-team"] = {}
    new["agents"]["1004"] = {"sip_password": "demo-1004", "team": "vip-team"}
    new["queues"]["vip"] = {"teams": ["vip-team"]}
    with pytest.raises(UnknownQueueError):
        controller.acd.queue_snapshot("vip", 1.0)
    assert swap(controller, settings, new) == []
    assert controller.acd.queue_snapshot("vip", 1.0).queue_id == "vip"
    assert controller.acd.agent("1004").team_id == "vip-team"
    assert "1004" in controller.agent_ids
    assert controller.center.queues["vip"].teams == ["vip-team"]
    assert controller.settings is controller.center.settings


def test_changes_the_acd_cannot_take_live_are_reported(
    demo: tuple[Settings, dict[str, Any]],
) -> None:
    settings, docs = demo
    controller = running(settings, docs)
    new = copy.deepcopy(docs)
    new["queues"]["support"]["ring_timeout_s"] = 9
    new["agents"]["1002"]["skills"] = {"billing": 2}
    del new["queues"]["sales"]
    new["flows"]["demo-menu"]["blocks"]["to_sales"]["queue"] = "support"
    del new["agents"]["1003"]
    new["queues"]["support"]["agents"] = ["1001", "1002"]
    waits = swap(controller, settings, new)
    assert [w.split(":")[0] for w in waits] == [
        "agents/1002",
        "agents/1003",
        "queues/support",
        "queues/sales",
    ]
    assert "at restart" in waits[2] and "announcements, music and fallback flow" in waits[2]
    # Routing reads the new center: the deleted queue takes no new caller.
    assert "sales" not in controller.center.queues
    # The password of a deleted agent is gone (the authenticator reads the center).
    assert "1003" not in {a.id for a in controller.center.settings.agents}
