"""Registration with real phones: baresip and pjsua2 register with digest auth to a running
Tsunagu over real sockets; SIPp runs a registration storm (issue 2's proof)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.pjsua import PjsuaAgent
from tests.integration.peers.sipp import Sipp
from tests.integration.peers.tsunagu import Agent, TsunaguServer


def health(server: TsunaguServer) -> dict[str, Any]:
    data: dict[str, Any] = server.api("/api/v1/health")
    return data


def registered_aors(server: TsunaguServer) -> list[str]:
    return sorted(r["aor"] for r in health(server)["registrations"])


def is_msg(msg: str, **fields: object) -> Callable[[dict[str, Any]], bool]:
    return lambda line: line.get("msg") == msg and all(line.get(k) == v for k, v in
                                                       fields.items())  # fmt: skip


def test_baresip_registers_over_udp_and_tcp(
    tsunagu_server: TsunaguServer, baresip_factory: Callable[..., BaresipUA]
) -> None:
    udp = baresip_factory(BaresipAccount("1001", "demo-1001", tsunagu_server.registrar))
    udp.register_and_wait()
    tcp = baresip_factory(
        BaresipAccount("1002", "demo-1002", tsunagu_server.registrar, transport="tcp")
    )
    tcp.register_and_wait()
    line = tsunagu_server.wait_log(is_msg("registered", aor="1002"))
    assert "tcp:127.0.0.1:" in str(line["peer"])
    assert line["call_id"]  # the structured log names the SIP Call-ID it concerns
    regs = {r["aor"]: r for r in health(tsunagu_server)["registrations"]}
    assert set(regs) == {"1001", "1002"}
    assert regs["1002"]["source"].startswith("tcp:")
    assert "baresip" in regs["1001"]["user_agent"]


def test_baresip_wrong_password_refused_and_logged(
    tsunagu_server: TsunaguServer, baresip_factory: Callable[..., BaresipUA]
) -> None:
    ua = baresip_factory(BaresipAccount("1001", "not-the-password", tsunagu_server.registrar))
    event = ua.wait_register_fail()
    assert "403" in event.param
    failure = tsunagu_server.wait_log(lambda line: line.get("event") == "auth_failure")
    assert failure["user"] == "1001"
    text = tsunagu_server.log_path.read_text()
    assert "not-the-password" not in text and "demo-1001" not in text  # secrets never logged
    assert registered_aors(tsunagu_server) == []


def test_baresip_unregisters_on_exit(
    tsunagu_server: TsunaguServer, baresip_factory: Callable[..., BaresipUA]
) -> None:
    ua = baresip_factory(BaresipAccount("1003", "demo-1003", tsunagu_server.registrar))
    ua.register_and_wait()
    assert registered_aors(tsunagu_server) == ["1003"]
    ua.stop()
    tsunagu_server.wait_log(is_msg("unregistered", aor="1003"))
    assert registered_aors(tsunagu_server) == []


def test_pjsua_registers_refreshes_and_unregisters(
    tsunagu_factory: Callable[..., TsunaguServer], pjsua_factory: Callable[..., PjsuaAgent]
) -> None:
    server = tsunagu_factory(config={"sip": {"registrar": {"min_expires": 5}}})
    agent = pjsua_factory()
    account = agent.add_account(
        "1002",
        password="demo-1002",
        registrar=server.registrar,
        reg_timeout=8,
    )
    account.wait_registered()
    server.wait_log(is_msg("registered", aor="1002"))
    # pjsua refreshes a few seconds before the 8 s expiry: a second authenticated REGISTER.
    server.wait_log(is_msg("registration refreshed", aor="1002"), timeout=20)
    assert registered_aors(server) == ["1002"]
    mark = agent.mark()
    account.unregister()
    account.wait_unregistered(since=mark)
    server.wait_log(is_msg("unregistered", aor="1002"))
    assert registered_aors(server) == []


def test_pjsua_wrong_password_refused(
    tsunagu_server: TsunaguServer, pjsua_factory: Callable[..., PjsuaAgent]
) -> None:
    agent = pjsua_factory()
    account = agent.add_account(
        "1001", password="wrong-password", registrar=tsunagu_server.registrar
    )
    event = account.wait_reg_state()
    assert int(event["code"]) == 403
    assert registered_aors(tsunagu_server) == []


def test_restart_keeps_bindings(
    tsunagu_server: TsunaguServer, baresip_factory: Callable[..., BaresipUA]
) -> None:
    ua = baresip_factory(BaresipAccount("1001", "demo-1001", tsunagu_server.registrar))
    ua.register_and_wait()
    mark = len(ua.events())
    tsunagu_server.restart()
    ready = tsunagu_server.wait_log(is_msg("tsunagu ready"))
    assert ready["bindings_restored"] == 1
    assert registered_aors(tsunagu_server) == ["1001"]
    # The phone did not have to register again for that.
    assert all(e.type != "REGISTER_OK" for e in ua.events()[mark:])


def test_sipp_registration_storm(
    tsunagu_factory: Callable[..., TsunaguServer], sipp_factory: Callable[..., Sipp]
) -> None:
    agents = [Agent(str(3000 + i), f"Agent {i}", f"storm-pass-{i}") for i in range(200)]
    # One SIPp process is one source address: allow-list it, as an operator would a
    # known office NAT, so the flood defence does not mistake the storm for an attack.
    # SIPp 3.6 computes MD5 digests only and fails on a SHA-256 challenge.
    server = tsunagu_factory(
        agents=agents,
        config={
            "security": {
                "ban": {"allow": ["127.0.0.0/8"]},
                "auth": {"md5_only_user_agents": ["SIPp"]},
            },
            "logging": {"level": "INFO"},
        },
    )
    sipp = sipp_factory(
        "register_auth",
        remote=server.registrar,
        users=[(a.id, a.password) for a in agents],
        calls=len(agents),
        rate=100,
        transport="un",
    )
    result = sipp.run(timeout=60)
    assert result.ok, result.explain()
    assert result.successful == len(agents)
    assert len(registered_aors(server)) == len(agents)
