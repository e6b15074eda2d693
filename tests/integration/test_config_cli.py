"""``tsunagu config apply`` and ``tsunagu config export`` as an operator runs them: real
subprocesses against a SQLite data directory and against PostgreSQL. The diff is printed,
applying twice is "no changes", an export applies back as no change, and no secret is
ever printed unless asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.test_calls import demo_center

SECRETS = ("demo-1001", "demo-1002", "demo-1003")


def tsunagu(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsunagu", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def demo_file(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    data = {"server": {"data_dir": str(tmp_path / "data")}, **demo_center(), **extra}
    data["calendars"] = [{"name": "jp", "country": "JP"}]
    return data


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_apply_and_export_on_a_data_directory(tmp_path: Path) -> None:
    data = demo_file(tmp_path)
    config = write_config(tmp_path / "tsunagu.yaml", data)

    dry = tsunagu("config", "apply", config, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "+ numbers/+81312345600" in dry.stdout
    assert "+ flows/demo-after-hours" in dry.stdout
    assert "would apply: 14 to create, 0 to update, 0 to delete" in dry.stdout
    assert str(tmp_path / "data" / "tsunagu.sqlite3") in dry.stdout
    again = tsunagu("config", "apply", config, "--dry-run", cwd=tmp_path)
    assert "would apply: 14 to create" in again.stdout  # the dry run wrote nothing

    applied = tsunagu("config", "apply", config, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "14 to create, 0 to update, 0 to delete" in applied.stdout
    assert "applied: now at revision 14" in applied.stdout
    twice = tsunagu("config", "apply", config, cwd=tmp_path)
    assert twice.returncode == 0
    assert "no changes (revision 14)" in twice.stdout

    exported = tmp_path / "export.yaml"
    export = tsunagu("config", "export", "--config", config, "--output", exported, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert "secrets redacted" in export.stderr
    text = exported.read_text()
    assert "revision 14" in text and "<redacted>" in text
    assert_no_secret(text, export.stdout, export.stderr)
    assert exported.stat().st_mode & 0o077 == 0
    # What export writes, apply takes back: no change (redacted secrets keep the stored).
    back = tsunagu("config", "apply", exported, "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert "no changes (revision 14)" in back.stdout

    with_secrets = tsunagu(
        "config", "export", "--config", config, "--include-secrets", cwd=tmp_path
    )
    assert "demo-1001" in with_secrets.stdout
    assert "SECRETS INCLUDED" in with_secrets.stderr

    # Changing a password and a queue: the diff names the fields, never the secret.
    data["agents"][0]["sip_password"] = "brand-new-secret"
    data["queues"][0]["ring_timeout_s"] = 9
    write_config(config, data)
    changed = tsunagu("config", "apply", config, cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    lines = changed.stdout.splitlines()
    assert "~ agents/1001" in lines
    assert '    $.sip_password: "<redacted>" -> "<redacted, changed>"' in lines
    assert "~ queues/support" in lines
    assert "    $.ring_timeout_s: (absent) -> 9.0" in lines  # 15 is the default: not stored
    assert "0 to create, 2 to update, 0 to delete" in lines
    assert "brand-new-secret" not in changed.stdout + changed.stderr
    assert_no_secret(changed.stdout, changed.stderr)


def test_apply_against_a_database_url_and_refusals(tmp_path: Path, store_url: str) -> None:
    config = write_config(tmp_path / "tsunagu.yaml", demo_file(tmp_path))
    first = tsunagu("config", "apply", config, "--database", store_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied: now at revision 14" in first.stdout
    second = tsunagu("config", "apply", config, "--database", store_url, cwd=tmp_path)
    assert "no changes (revision 14)" in second.stdout
    assert "change-me" not in first.stdout  # the URL is shown without its password

    # A file holding only flows replaces the flows and leaves the numbers alone: dropping
    # a flow a number uses is refused, naming the number, the field and the fix.
    flows_only = write_config(
        tmp_path / "flows.yaml", {"flows": [f for f in demo_center()["flows"][:2]]}
    )
    refused = tsunagu("config", "apply", flows_only, "--database", store_url, cwd=tmp_path)
    assert refused.returncode == 2
    assert "refused, nothing written" in refused.stderr
    assert (
        "numbers/+81312345601.flow: unknown flow 'demo-menu'; add the flow first" in refused.stderr
    )

    # A bad document is refused by the YAML's own validation, naming the field.
    bad = demo_file(tmp_path)
    bad["queues"][0]["strategy"] = "fastest"
    invalid = tsunagu(
        "config",
        "apply",
        write_config(tmp_path / "bad.yaml", bad),
        "--database",
        store_url,
        cwd=tmp_path,
    )
    assert invalid.returncode == 2
    assert "queues[0].strategy" in invalid.stderr

    after = tsunagu("config", "apply", config, "--database", store_url, cwd=tmp_path)
    assert "no changes (revision 14)" in after.stdout  # nothing was written by the refusals

    export = tsunagu("config", "export", "--database", store_url, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    exported = yaml.safe_load(export.stdout)
    assert [n["number"] for n in exported["numbers"]] == ["0312345600", "0312345601", "0312345678"]
    assert_no_secret(export.stdout, export.stderr)
