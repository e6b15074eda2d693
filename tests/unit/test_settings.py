"""Settings are validated once, and every problem names its field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu.cli import main
from tsunagu.settings import ConfigError, load_settings, parse_settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def test_demo_config_is_valid() -> None:
    settings = load_settings(DEMO)
    assert [a.id for a in settings.agents] == ["1001", "1002", "1003"]
    assert settings.agents[0].sip_password == "demo-1001"
    assert settings.server.sip_port == 5060 and settings.server.bind == "127.0.0.1"


def test_overrides_from_command_line(tmp_path: Path) -> None:
    settings = load_settings(DEMO, {"sip_port": 5999, "data_dir": str(tmp_path), "bind": None})
    assert settings.server.sip_port == 5999 and settings.server.data_dir == tmp_path
    assert settings.server.bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("data", "field", "hint"),
    [
        ({"server": {"sip_port": 70000}}, "server.sip_port", "less than or equal to 65535"),
        ({"server": {"bind": "localhost"}}, "server.bind", "IP address"),
        ({"sip": {"timers": {"t1_ms": 1}}}, "sip.timers.t1_ms", "greater than or equal to 50"),
        ({"agents": [{"id": "1001"}]}, "agents[0].sip_password", "required"),
        ({"agents": [{"id": "1", "sip_password": "short"}]}, "agents[0].sip_password", "8"),
        (
            {"security": {"auth": {"algorithms": ["SHA-1"]}}},
            "security.auth.algorithms[0]",
            "SHA-256",
        ),
        ({"security": {"ban": {"allow": ["not-a-net"]}}}, "security.ban.allow", "CIDR"),
        ({"sevrer": {}}, "sevrer", "unknown setting"),
        ({"api": {"rate_limit": {"per_second": 0}}}, "api.rate_limit.per_second", "greater"),
        ({"api": {"rate_limit": {"burst": 0}}}, "api.rate_limit.burst", "greater"),
        (
            {
                "agents": [
                    {"id": "1", "sip_password": "password1"},
                    {"id": "1", "sip_password": "password2"},
                ]
            },
            "agents",
            "twice",
        ),
    ],
)
def test_bad_settings_name_the_field(data: dict[str, object], field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, "test.yaml")
    text = str(info.value)
    assert f"  {field}: " in text and hint in text


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  bind: [oops\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_settings(bad)


def test_cli_refuses_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  sip_port: -1\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "server.sip_port" in capsys.readouterr().err
    assert main(["check-config", str(DEMO)]) == 0


def test_password_not_in_repr() -> None:
    settings = load_settings(DEMO)
    assert "demo-1001" not in repr(settings)
