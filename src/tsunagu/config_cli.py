"""``tsunagu config apply FILE [--dry-run]`` and ``tsunagu config export [--output FILE]``.

Why a command and not only the API: the store is the source of truth once seeded, so an
operator who keeps the configuration in git needs a way to load a reviewed file into it
(and to get the store's state back out as a file) that shows exactly what will change
first. ``apply`` is idempotent: the second run prints ``no changes`` and writes nothing.

Which database: ``--database URL``, else the file's ``server.database_url``, else SQLite
in its ``server.data_dir`` (``--data-dir`` overrides it) — the rule ``serve`` follows.

Secrets (agents' ``sip_password``, trunks' ``password``) are never printed: a diff shows
that one changed, not its value, and ``export`` writes ``<redacted>`` unless
``--include-secrets`` is given. Applying ``<redacted>`` keeps the stored secret, so a
redacted export applies back as no change.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tsunagu.api.users import validate_auth_document
from tsunagu.config_documents import (
    center_documents,
    documents_to_config,
    make_validator,
    settings_to_documents,
    whole_picture_problems,
)
from tsunagu.config_kinds import CENTER_KINDS, redact_document, redact_pair, restore_secrets
from tsunagu.settings import ConfigError, Settings, load_settings
from tsunagu.store import (
    ConfigValidationError,
    RevisionConflictError,
    Store,
    default_url,
    open_store,
    safe_url,
)
from tsunagu.store.config_diff import Diff, DiffItem

#: Exit statuses: 0 done (or nothing to do), 2 the file or the result is invalid, 3 the
#: store changed meanwhile (run again), 1 anything else.
EXIT_INVALID = 2
EXIT_CONFLICT = 3


def add_parser(sub: Any) -> None:
    """Add ``config apply`` and ``config export`` to the ``tsunagu`` command."""
    config = sub.add_parser("config", help="load or export the revisioned configuration")
    actions = config.add_subparsers(dest="config_command", required=True)

    apply = actions.add_parser(
        "apply", help="make the store's contact center equal to a YAML file (shows the diff)"
    )
    apply.add_argument("file", type=Path, help="YAML configuration file (as given to serve)")
    apply.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    _database_options(apply)

    export = actions.add_parser("export", help="write the store's contact center as YAML")
    export.add_argument("--config", type=Path, help="the server's YAML (to find its database)")
    export.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    export.add_argument(
        "--include-secrets",
        action="store_true",
        help="write SIP and trunk passwords (otherwise <redacted>)",
    )
    _database_options(export)


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database URL (overrides the file's server section)")
    parser.add_argument("--data-dir", type=Path, help="data directory holding tsunagu.sqlite3")


def database_url(args: argparse.Namespace, settings: Settings | None) -> str:
    """``--database``, else the file's ``server.database_url``, else its data dir's SQLite."""
    if args.database:
        return str(args.database)
    if settings is not None and settings.server.database_url and not args.data_dir:
        return settings.server.database_url
    data_dir = args.data_dir or (settings.server.data_dir if settings else Path("./var"))
    return default_url(data_dir)


def run(args: argparse.Namespace) -> int:
    try:
        if args.config_command == "apply":
            return asyncio.run(_apply(args))
        return asyncio.run(_export(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except ConfigValidationError as exc:
        _print_problems("refused", exc.problems)
        return EXIT_INVALID
    except RevisionConflictError as exc:
        print(f"the configuration changed meanwhile ({exc}); run again", file=sys.stderr)
        return EXIT_CONFLICT


def present_kinds(path: Path) -> list[str]:
    """The contact-center sections the file actually has: only those are applied (a file
    with only ``flows:`` cannot wipe the numbers; ``numbers: []`` deletes every number)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        return []
    return [kind for kind in CENTER_KINDS if kind in data]


async def _open(url: str) -> Store:
    return await open_store(url, validator=make_validator(validate_auth_document))


async def _apply(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    kinds = present_kinds(args.file)
    documents = settings_to_documents(settings, str(args.file))
    url = database_url(args, settings)
    store = await _open(url)
    try:
        config = store.config
        revision = await config.current_revision()
        current = await config.export()
        desired, problems = restore_secrets({k: documents[k] for k in kinds}, current)
        would_be = {**center_documents(current), **desired}
        problems += whole_picture_problems(would_be)
        if problems:
            _print_problems(f"{args.file}: refused, nothing written", problems)
            return EXIT_INVALID
        diff = await config.apply(desired, _actor(), dry_run=args.dry_run, base_revision=revision)
    finally:
        await store.close()
    print(f"database: {safe_url(url)}")
    if not kinds:
        print(f"{args.file} has no contact-center sections ({', '.join(CENTER_KINDS)})")
    if diff.empty:
        print(f"no changes (revision {diff.base_revision})")
        return 0
    print(redacted_diff(diff).render())
    if diff.applied_revision is not None:
        print(f"applied: now at revision {diff.applied_revision}")
    return 0


def redacted_diff(diff: Diff) -> Diff:
    """``diff`` with every secret hidden (a changed secret still shows as changed)."""
    items = []
    for item in diff.items:
        before, after = redact_pair(item.kind, item.before, item.after)
        items.append(DiffItem(item.operation, item.kind, item.name, before, after))
    return Diff(tuple(items), diff.base_revision, diff.dry_run, diff.applied_revision)


async def _export(args: argparse.Namespace) -> int:
    settings = load_settings(args.config) if args.config else None
    url = database_url(args, settings)
    store = await open_store(url)
    try:
        revision = await store.config.current_revision()
        docs = center_documents(await store.config.export())
    finally:
        await store.close()
    if not args.include_secrets:
        docs = {
            kind: {name: redact_document(kind, doc) or {} for name, doc in entities.items()}
            for kind, entities in docs.items()
        }
    secrets_note = (
        "SECRETS INCLUDED (SIP and trunk passwords): keep this file private"
        if args.include_secrets
        else "secrets redacted: <redacted> keeps the stored value when applied back; "
        "--include-secrets writes them"
    )
    header = (
        f"# Tsunagu contact-center configuration, revision {revision}, exported "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"# {secrets_note}\n"
        "# Load it with: tsunagu config apply FILE\n"
    )
    text = header + yaml.safe_dump(documents_to_config(docs), sort_keys=False, allow_unicode=True)
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write_private(args.output, text)
        print(f"wrote {args.output} (revision {revision}); {secrets_note}", file=sys.stderr)
    if args.output is None:
        print(f"# {secrets_note}", file=sys.stderr)
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (it may hold passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _print_problems(title: str, problems: list[str]) -> None:
    print(title, file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"
