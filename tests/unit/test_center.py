"""Cross-checks of the whole configuration: refused with every problem named by place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu.calls.numbers import NumberError, is_toll_free, same_number, to_e164, to_national
from tsunagu.center import build_center
from tsunagu.cli import main
from tsunagu.settings import ConfigError, load_settings, parse_settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def test_demo_center() -> None:
    center = build_center(load_settings(DEMO))
    assert center.number("0312345678") is not None
    assert center.number("+81312345678") is center.number("03-1234-5678")
    assert center.number("0399999999") is None
    assert set(center.queues) == {"support", "sales"}
    assert center.flows["demo-menu"].start == "menu"
    assert "always_closed" in center.hours and "jp" in center.calendars


def test_check_config_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(DEMO)]) == 0
    assert "3 numbers, 3 flows, 2 queues, 1 trunks" in capsys.readouterr().out


def _settings(tmp_path: Path, flow_text: str, **extra: object) -> dict[str, object]:
    (tmp_path / "f.yaml").write_text(flow_text)
    data: dict[str, object] = {
        "base_dir": str(tmp_path),
        "agents": [{"id": "1001", "sip_password": "password1", "team": "ghost-team"}],
        "flows": [{"file": "f.yaml"}],
        "numbers": [{"number": "0312345678", "flow": "nope"}],
        "queues": [{"id": "q", "agents": ["1001", "9999"], "fallback_flow": "missing"}],
        "customers": [{"number": "09011112222", "agent": "4242"}],
    }
    data.update(extra)
    return data


LOOPING_FLOW = """
name: loop
version: 1
start: a
blocks:
  a: {type: PlayPrompt, text: hello, language: en, next: b}
  b: {type: TransferToQueue, queue: unknown-queue, on_failure: a}
"""


def test_every_cross_reference_problem_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_center(parse_settings(_settings(tmp_path, LOOPING_FLOW)), "cc.yaml")
    places = [where for where, _ in info.value.problems]
    text = str(info.value)
    assert "agents[0].team" in places and "ghost-team" in text
    assert "numbers[0].flow" in places and "'nope'" in text
    assert "queues[0].agents" in places and "'9999'" in text
    assert "queues[0].fallback_flow" in places
    assert "customers[0].agent" in places
    # The flow itself: unknown queue and a cycle without a LoopGuard.
    flow_lines = [m for where, m in info.value.problems if where == "flows[0].file"]
    assert any("unknown-queue" in m for m in flow_lines)
    assert any("LoopGuard" in m for m in flow_lines)


def test_unreadable_flow_file(tmp_path: Path) -> None:
    data = _settings(tmp_path, LOOPING_FLOW, flows=[{"file": "absent.yaml"}])
    with pytest.raises(ConfigError, match=r"flows\[0\]\.file: cannot read"):
        build_center(parse_settings(data))


def test_numbers() -> None:
    assert to_e164("03-1234-5678") == "+81312345678"
    assert to_e164("tel:+81312345678;phone-context=x") == "+81312345678"
    assert to_e164("81501234567") == "+81501234567"
    assert to_e164("1001") == "1001"  # an extension stays internal
    assert to_national("+81120123456") == "0120123456"
    assert to_national("+14155550100") == "+14155550100"
    assert same_number("0501234567", "+81501234567")
    assert is_toll_free("+81120123456") and is_toll_free("0570000000")
    assert not is_toll_free("0312345678")
    with pytest.raises(NumberError):
        to_e164("call me")
