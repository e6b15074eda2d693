"""``tsunagu`` command line: ``serve``, ``check-config``, ``config apply/export`` and
``simulate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tsunagu import __version__, config_cli, logs
from tsunagu.acd import simulate_cli
from tsunagu.center import Center, build_center
from tsunagu.settings import ConfigError, Settings, load_settings

log = logging.getLogger("tsunagu")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 1-65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsunagu", description="Tsunagu contact center")
    parser.add_argument("--version", action="version", version=f"tsunagu {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", type=Path, required=True, help="YAML configuration file")
    serve.add_argument("--bind", help="listen address (default 127.0.0.1)")
    serve.add_argument("--sip-port", type=_port, help="SIP port, UDP and TCP (default 5060)")
    serve.add_argument("--http-port", type=_port, help="HTTP port (default 8080)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ./var)")

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", type=Path)

    config_cli.add_parser(sub)
    simulate_cli.add_parser(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "bind": args.bind,
        "sip_port": args.sip_port,
        "http_port": args.http_port,
        "data_dir": str(args.data_dir) if args.data_dir else None,
    }
    return load_settings(args.config, overrides)


async def _serve(settings: Settings, center: Center) -> None:
    from tsunagu.app import Server  # noqa: PLC0415 - keep `check-config` light

    server = Server(settings, center)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if settings.server.bind not in ("127.0.0.1", "::1"):
        log.warning(
            "listening beyond loopback: make sure the firewall and passwords are ready",
            extra={"bind": settings.server.bind},
        )
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        return simulate_cli.run(args)
    if args.command == "config":
        return config_cli.run(args)
    try:
        settings = _settings(args) if args.command == "serve" else load_settings(args.config)
        center = build_center(settings, str(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(
            f"{args.config}: OK ({len(settings.agents)} agents, {len(center.numbers)} numbers, "
            f"{len(center.flows)} flows, {len(center.queues)} queues, {len(center.trunks)} trunks)"
        )
        return 0
    logs.configure(settings.logging.level, settings.logging.format)
    import uvloop  # noqa: PLC0415

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(settings, center))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except ConfigError as exc:
        log.error("cannot start: the configuration store's state cannot run\n%s", exc)
        return 2
    return 0
