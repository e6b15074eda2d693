"""Digest authentication: RFC vectors, header syntax, and the server-side verifier."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.sip import digest, digest_headers
from tsunagu.sip.digest import (
    REASON_BAD_CREDENTIALS,
    AuthOutcome,
    DigestAuthenticator,
    DigestChallenge,
    DigestCredentials,
    DigestSyntaxError,
    NotDigestError,
    UnsupportedChallengeError,
    build_authorization,
    compute_response,
    parse_challenge,
    parse_credentials,
)

# --------------------------------------------------------------------------- RFC vectors

# RFC 7616 §3.9.1, written as on the wire with folded lines.
RFC7616_CHALLENGE = (
    'Digest\r\n    realm="http-auth@example.org",\r\n    qop="auth, auth-int",\r\n'
    "    algorithm={alg},\r\n"
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n    realm="http-auth@example.org",\r\n'
    '    uri="/dir/index.html",\r\n    algorithm={alg},\r\n'
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
    "    nc=00000001,\r\n"
    '    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",\r\n'
    '    qop=auth,\r\n    response="{response}",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize("alg", ["MD5", "SHA-256"])
def test_rfc7616_example_response_from_parsed_header(alg: str) -> None:
    creds = parse_credentials(
        RFC7616_AUTHORIZATION.format(alg=alg, response=RFC7616_RESPONSES[alg])
    )
    assert creds.username == "Mufasa"
    assert creds.realm == "http-auth@example.org"
    assert creds.uri == "/dir/index.html"
    assert creds.algorithm == alg
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.nonce_count == 1
    assert creds.cnonce == RFC7616_CNONCE
    assert creds.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    recomputed = compute_response(
        algorithm=creds.algorithm,
        username=creds.username,
        realm=creds.realm,
        password="Circle of Life",
        method="GET",
        uri=creds.uri,
        nonce=creds.nonce,
        qop=creds.qop,
        nc=creds.nc,
        cnonce=creds.cnonce,
    )
    assert recomputed == creds.response == RFC7616_RESPONSES[alg]


@pytest.mark.parametrize("alg", ["MD5", "SHA-256"])
def test_rfc7616_example_client_builds_the_rfc_answer(alg: str) -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE.format(alg=alg))
    assert challenge.qop == ("auth", "auth-int")
    value = build_authorization(
        RFC7616_CHALLENGE.format(alg=alg),
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    ours = parse_credentials(value)
    rfc = parse_credentials(RFC7616_AUTHORIZATION.format(alg=alg, response=RFC7616_RESPONSES[alg]))
    assert ours == rfc


def test_rfc2617_example_is_still_computed() -> None:
    # RFC 2617 §3.5 (note the capital O in the password of that RFC's example).
    assert (
        compute_response(
            algorithm="md5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc2069_and_sess_formulas() -> None:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("u:r:p")
    ha2 = md5("INVITE:sip:x@y")
    plain = compute_response(
        algorithm="MD5", username="u", realm="r", password="p", method="INVITE",
        uri="sip:x@y", nonce="n",
    )  # fmt: skip
    assert plain == md5(f"{ha1}:n:{ha2}")
    sess = compute_response(
        algorithm="MD5-sess", username="u", realm="r", password="p", method="INVITE",
        uri="sip:x@y", nonce="n", qop="auth", nc="00000002", cnonce="c",
    )  # fmt: skip
    assert sess == md5(f"{md5(f'{ha1}:n:c')}:n:00000002:c:auth:{ha2}")
    with pytest.raises(ValueError, match="unsupported"):
        compute_response(
            algorithm="SHA-512-256", username="u", realm="r", password="p", method="A",
            uri="u", nonce="n",
        )  # fmt: skip


# --------------------------------------------------------------------------- syntax


def test_parse_escapes_order_case_and_unknown_params() -> None:
    value = (
        'dIgEsT  Response="ABCDEF", uri="sip:1001@h;transport=tcp", NONCE=abc,'
        ' Username="al\\"ice\\\\x", realm="my \\realm", algorithm="sha-256",'
        ' x-vendor=token-1, cnonce="c n", nc=0000000A, qop=AUTH, foo="a, b"'
    )
    creds = parse_credentials(value)
    assert creds.username == 'al"ice\\x'
    assert creds.realm == "my realm"
    assert creds.nonce == "abc"
    assert creds.uri == "sip:1001@h;transport=tcp"
    assert creds.response == "ABCDEF"
    assert creds.algorithm == "SHA-256"
    assert creds.qop == "auth"
    assert creds.nonce_count == 10
    assert creds.extra == (("x-vendor", "token-1"), ("foo", "a, b"))
    # What we write parses back to the same value.
    assert parse_credentials(str(creds)) == creds
    assert bytes(creds) == str(creds).encode()


def test_parse_defaults_and_username_star() -> None:
    creds = parse_credentials(
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=r, nonce=n, uri=u, response=x"
    )
    assert creds.username == "Jäsøn Doe"
    assert creds.algorithm == "MD5"
    assert creds.qop is None
    assert creds.nc is None
    assert creds.nonce_count is None
    assert parse_credentials(str(creds)).username == "Jäsøn Doe"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        "Digest ",
        "Digest username",
        'Digest username="a',
        'Digest username="a\\',
        "Digest =x",
        'Digest username="a" realm="b"',
        'Digest username="a",, realm="b"',  # missing nonce, uri, response
        'Digest username="a", username="b", realm=r, nonce=n, uri=u, response=x',
        'Digest username="a", realm=r, nonce=n, uri=u, response=x, qop=auth',  # no nc/cnonce
        'Digest username="a", realm=r, nonce=n, uri=u, response=x, qop=auth, nc=1, cnonce=c',
        'Digest username="a", realm=r, nonce=n, uri=u, response=x, nc=0000000g',
        'Digest username="a\x00", realm=r, nonce=n, uri=u, response=x',
        'Digest username="a\r\nb", realm=r, nonce=n, uri=u, response=x',
        "Digest username*=UTF-8''%FF, realm=r, nonce=n, uri=u, response=x",
        "Digest username*=nocharset, realm=r, nonce=n, uri=u, response=x",
        "Digest username=a, username*=UTF-8''b, realm=r, nonce=n, uri=u, response=x",
        '"Digest" username=a',
        "Digest a=b c=d",
    ],
)
def test_garbage_raises_syntax_error(value: str) -> None:
    with pytest.raises(DigestSyntaxError):
        parse_credentials(value)


def test_duplicate_empty_elements_are_tolerated() -> None:
    creds = parse_credentials(
        ", ".join(["Digest username=a", "", "realm=r,nonce=n,uri=u", "response=x,"])
    )
    assert (creds.username, creds.realm, creds.response) == ("a", "r", "x")


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        ("NoOneKnowsThisScheme opaque-data=here", "NoOneKnowsThisScheme"),  # RFC 4475 §3.3.7
        ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Basic"),
        ("Bearer", "Bearer"),
    ],
)
def test_non_digest_scheme_is_recognised(value: str, scheme: str) -> None:
    with pytest.raises(NotDigestError) as info:
        parse_credentials(value)
    assert info.value.scheme == scheme


@given(st.text())
def test_parse_credentials_never_raises_anything_else(value: str) -> None:
    try:
        creds = parse_credentials(value)
    except DigestSyntaxError:
        return
    assert isinstance(creds, DigestCredentials)


_PIECES = st.sampled_from(
    ["Digest", " ", ",", "=", '"', "\\", "username", "realm", "nonce", "uri", "response",
     "qop", "auth", "nc", "00000001", "cnonce", "algorithm", "MD5", "\r\n", "\t", "x", "é"]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=40).map("".join))
def test_parse_near_miss_values_only_raise_syntax_error(value: str) -> None:
    for parse in (parse_credentials, parse_challenge):
        try:
            parsed = parse(value)
        except DigestSyntaxError:
            continue
        assert type(parsed).parse(str(parsed)) == parsed


_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=30)


@given(
    username=_TEXT,
    realm=_TEXT,
    nonce=_TEXT,
    uri=_TEXT,
    response=_TEXT,
    algorithm=_TEXT.filter(bool),
    cnonce=st.none() | _TEXT,
    opaque=st.none() | _TEXT,
    qop=st.none() | st.sampled_from(["auth", "auth-int", "odd qop"]),
    nc=st.integers(0, 0xFFFFFFFF),
)
def test_credentials_round_trip(
    *,
    username: str,
    realm: str,
    nonce: str,
    uri: str,
    response: str,
    algorithm: str,
    cnonce: str | None,
    opaque: str | None,
    qop: str | None,
    nc: int,
) -> None:
    creds = DigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=digest_headers._canonical_algorithm(algorithm),
        qop=qop,
        nc=f"{nc:08x}" if qop else None,
        cnonce=cnonce if cnonce is not None or not qop else "c",
        opaque=opaque,
    )
    assert parse_credentials(str(creds)) == creds


def test_challenge_parse_and_serialise() -> None:
    value = 'digest REALM="a b", nonce=xyz, stale=TRUE, qop="auth,auth-int", domain="sip:a sip:b"'
    challenge = parse_challenge(value)
    assert challenge == DigestChallenge(
        realm="a b", nonce="xyz", stale=True, qop=("auth", "auth-int"), domain="sip:a sip:b"
    )
    assert parse_challenge(str(challenge)) == challenge
    with pytest.raises(DigestSyntaxError):
        parse_challenge('Digest nonce="x"')
    with pytest.raises(NotDigestError):
        parse_challenge('Basic realm="x"')


def test_client_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(UnsupportedChallengeError):
        build_authorization(
            'Digest realm="r", nonce="n", algorithm=SHA-512-256', "A", "u", "n", "p",
            cnonce="c", nc=1,
        )  # fmt: skip
    with pytest.raises(UnsupportedChallengeError):
        build_authorization(
            'Digest realm="r", nonce="n", qop="auth-int"', "A", "u", "n", "p", cnonce="c", nc=1
        )
    with pytest.raises(ValueError, match="nc"):
        build_authorization('Digest realm="r", nonce="n"', "A", "u", "n", "p", cnonce="c", nc=0)


def test_client_userhash() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256, userhash=true',
        "REGISTER", "sip:r", "alice", "pw", cnonce="c", nc=3,
    )  # fmt: skip
    creds = parse_credentials(value)
    assert creds.userhash
    assert creds.username == hashlib.sha256(b"alice:r").hexdigest()
    assert creds.nc == "00000003"


# --------------------------------------------------------------------------- verifier

URI = "sip:tsunagu.local"
USERS = {"1001": "correct horse 1001", "1002": "battery staple 1002"}


def make_auth(**kwargs: object) -> DigestAuthenticator:
    return DigestAuthenticator("tsunagu", USERS.get, secret=b"k" * 32, **kwargs)  # type: ignore[arg-type]


def answer(
    challenge: str,
    user: str = "1001",
    password: str | None = None,
    *,
    nc: int = 1,
    uri: str = URI,
    method: str = "REGISTER",
) -> str:
    pw = USERS[user] if password is None else password
    return build_authorization(challenge, method, uri, user, pw, cnonce="0a4f113b", nc=nc)


def first_challenge(auth: DigestAuthenticator, now: float = 0.0) -> str:
    return auth.challenges(now)[0]


def test_challenges_one_per_algorithm_in_order() -> None:
    auth = make_auth()
    values = auth.challenges(10.0)
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]  # RFC 8760 §2.4
    for c in parsed:
        assert c.realm == "tsunagu"
        assert c.qop == ("auth",)
        assert c.opaque
        assert not c.stale
    assert parsed[0].nonce != parsed[1].nonce
    assert len({parse_challenge(v).nonce for v in auth.challenges(10.0)} | {parsed[0].nonce}) == 3
    stale = [parse_challenge(v) for v in auth.challenges(10.0, stale=True)]
    assert all(c.stale for c in stale)
    assert all("stale=true" in v for v in auth.challenges(10.0, stale=True))


@pytest.mark.parametrize("algorithms", [("SHA-256",), ("MD5",), ("SHA-256-sess", "MD5-sess")])
def test_round_trip_every_algorithm(algorithms: tuple[str, ...]) -> None:
    auth = make_auth(algorithms=algorithms)
    for challenge in auth.challenges(100.0):
        result = auth.verify("REGISTER", URI, [answer(challenge)], 101.0)
        assert result.outcome is AuthOutcome.OK, result
        assert result.username == "1001"


def test_wrong_password_fails() -> None:
    auth = make_auth()
    result = auth.verify("REGISTER", URI, [answer(first_challenge(auth), password="nope")], 1.0)
    assert result.outcome is AuthOutcome.FAILED
    assert result.reason == REASON_BAD_CREDENTIALS


def test_method_is_part_of_the_response() -> None:
    auth = make_auth()
    value = answer(first_challenge(auth), method="INVITE")
    assert auth.verify("REGISTER", URI, [value], 1.0).outcome is AuthOutcome.FAILED
    assert auth.verify("INVITE", URI, [value], 1.0).outcome is AuthOutcome.OK


def test_unknown_user_is_indistinguishable_from_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = digest.compute_response

    def counting(**kwargs: str) -> str:
        calls.append(kwargs["algorithm"])
        return real(**kwargs)  # type: ignore[arg-type]

    auth = make_auth()
    challenge = first_challenge(auth)
    wrong_value = answer(challenge, "1001", "guess")
    unknown_value = answer(challenge, "9999", "guess")
    empty_value = answer(challenge, "9999", "")
    monkeypatch.setattr(digest, "compute_response", counting)
    wrong = auth.verify("REGISTER", URI, [wrong_value], 1.0)
    wrong_calls = list(calls)
    calls.clear()
    unknown = auth.verify("REGISTER", URI, [unknown_value], 1.0)
    assert (wrong.outcome, wrong.reason) == (unknown.outcome, unknown.reason)
    assert wrong.outcome is AuthOutcome.FAILED
    assert wrong.username == "1001"
    assert unknown.username == "9999"
    assert wrong_calls == calls == ["SHA-256"]  # the same hashing work on both paths
    # The dummy password an unknown user is checked against opens nothing either.
    dummy = answer(challenge, "9999", auth._dummy_password)
    assert auth.verify("REGISTER", URI, [dummy], 1.0).reason == REASON_BAD_CREDENTIALS
    # No password (e.g. an empty default) opens an unknown account either.
    unknown_empty = auth.verify("REGISTER", URI, [empty_value], 1.0)
    assert (unknown_empty.outcome, unknown_empty.reason) == (wrong.outcome, wrong.reason)


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    auth = make_auth(nonce_ttl=30.0)
    challenge = first_challenge(auth, 0.0)
    assert auth.verify("REGISTER", URI, [answer(challenge)], 30.0).outcome is AuthOutcome.OK
    late = auth.verify("REGISTER", URI, [answer(challenge, nc=2)], 30.5)
    assert (late.outcome, late.reason) == (AuthOutcome.STALE, "nonce expired")
    wrong = auth.verify("REGISTER", URI, [answer(challenge, password="x", nc=3)], 30.5)
    assert wrong.outcome is AuthOutcome.FAILED
    # The stale challenge the caller then sends works.
    fresh = auth.challenges(31.0, stale=True)[0]
    assert auth.verify("REGISTER", URI, [answer(fresh)], 31.0).outcome is AuthOutcome.OK


def _replace_nonce(value: str, nonce: str) -> str:
    creds = parse_credentials(value)
    return str(dataclasses.replace(creds, nonce=nonce))


def test_forged_and_tampered_nonces_fail() -> None:
    auth = make_auth()
    challenge = parse_challenge(first_challenge(auth))
    good = challenge.nonce
    tampered = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    other_server = DigestAuthenticator("tsunagu", USERS.get, secret=b"z" * 32)
    foreign = parse_challenge(other_server.challenges(0.0)[0]).nonce
    md5_nonce = parse_challenge(auth.challenges(0.0)[1]).nonce
    future = parse_challenge(auth.challenges(10_000.0)[0]).nonce  # another time base
    bad_nonces = [
        tampered,
        foreign,
        md5_nonce,
        future,
        "",
        "x" * 48,
        "!" * 48,
        good + "AA",
        "é" * 48,
    ]
    for nonce in bad_nonces:
        forged = str(dataclasses.replace(challenge, nonce=nonce))
        for user, password in [("1001", "guess"), ("9999", "guess"), ("9999", "")]:
            result = auth.verify("REGISTER", URI, [answer(forged, user, password)], 1.0)
            assert (result.outcome, result.reason) == (AuthOutcome.FAILED, "bad nonce"), nonce
        # Someone who knows the password (a phone holding a nonce from before a restart)
        # is re-challenged rather than refused; that grants nothing but a new challenge.
        result = auth.verify("REGISTER", URI, [answer(forged)], 1.0)
        assert (result.outcome, result.reason) == (AuthOutcome.STALE, "nonce unknown"), nonce


def test_restart_with_another_secret_recovers_through_stale() -> None:
    before = DigestAuthenticator("tsunagu", USERS.get)
    after = DigestAuthenticator("tsunagu", USERS.get)
    old = answer(first_challenge(before))
    assert after.verify("REGISTER", URI, [old], 5.0).outcome is AuthOutcome.STALE
    fresh = answer(after.challenges(5.0, stale=True)[0])
    assert after.verify("REGISTER", URI, [fresh], 5.0).outcome is AuthOutcome.OK


def test_nonce_count_replay_and_increase() -> None:
    auth = make_auth()
    challenge = first_challenge(auth)
    assert auth.verify("REGISTER", URI, [answer(challenge, nc=1)], 1.0).outcome is AuthOutcome.OK
    replay = auth.verify("REGISTER", URI, [answer(challenge, nc=1)], 2.0)
    assert (replay.outcome, replay.reason) == (AuthOutcome.FAILED, "replay")
    assert auth.verify("REGISTER", URI, [answer(challenge, nc=5)], 3.0).outcome is AuthOutcome.OK
    lower = auth.verify("REGISTER", URI, [answer(challenge, nc=3)], 4.0)
    assert (lower.outcome, lower.reason) == (AuthOutcome.FAILED, "replay")
    assert auth.verify("REGISTER", URI, [answer(challenge, nc=6)], 5.0).outcome is AuthOutcome.OK


def test_failed_attempts_do_not_burn_nonce_counts() -> None:
    auth = make_auth()
    challenge = first_challenge(auth)
    bad = auth.verify("REGISTER", URI, [answer(challenge, password="x", nc=9)], 1.0)
    assert bad.outcome is AuthOutcome.FAILED
    assert auth.verify("REGISTER", URI, [answer(challenge, nc=2)], 1.0).outcome is AuthOutcome.OK


def test_without_qop_accepted_within_lifetime() -> None:
    auth = make_auth(nonce_ttl=60.0)
    challenge = dataclasses.replace(parse_challenge(first_challenge(auth)), qop=())
    value = answer(str(challenge))
    assert parse_credentials(value).qop is None
    assert auth.verify("REGISTER", URI, [value], 1.0).outcome is AuthOutcome.OK
    assert auth.verify("REGISTER", URI, [value], 59.0).outcome is AuthOutcome.OK
    assert auth.verify("REGISTER", URI, [value], 61.0).outcome is AuthOutcome.STALE
    assert auth.tracked_nonces == 0


def test_realm_mismatch_is_missing() -> None:
    auth = make_auth()
    other = DigestAuthenticator("carrier", USERS.get, secret=b"k" * 32)
    result = auth.verify("REGISTER", URI, [answer(first_challenge(other))], 1.0)
    assert (result.outcome, result.username) == (AuthOutcome.MISSING, None)
    assert auth.verify("REGISTER", URI, [], 1.0).outcome is AuthOutcome.MISSING


def test_several_authorization_values_pick_ours() -> None:
    auth = make_auth()
    other = DigestAuthenticator("carrier", USERS.get)
    values = [
        "NoOneKnowsThisScheme opaque-data=here",
        'Digest username="',
        answer(first_challenge(other), "1002"),
        answer(first_challenge(auth), "1001"),
    ]
    result = auth.verify("REGISTER", URI, values, 1.0)
    assert (result.outcome, result.username) == (AuthOutcome.OK, "1001")


def test_non_digest_only_is_missing() -> None:
    auth = make_auth()
    result = auth.verify("REGISTER", URI, ["NoOneKnowsThisScheme opaque-data=here"], 1.0)
    assert result.outcome is AuthOutcome.MISSING


def test_unusable_credentials_are_missing() -> None:
    auth = make_auth(algorithms=("SHA-256",))
    md5_server = DigestAuthenticator("tsunagu", USERS.get, algorithms=("MD5",), secret=b"k" * 32)
    downgrade = auth.verify("REGISTER", URI, [answer(first_challenge(md5_server))], 1.0)
    assert (downgrade.outcome, downgrade.reason) == (AuthOutcome.MISSING, "algorithm not offered")
    creds = parse_credentials(answer(first_challenge(auth)))
    auth_int = str(dataclasses.replace(creds, qop="auth-int"))
    assert auth.verify("REGISTER", URI, [auth_int], 1.0).outcome is AuthOutcome.MISSING
    hashed = str(dataclasses.replace(creds, userhash=True))
    assert auth.verify("REGISTER", URI, [hashed], 1.0).outcome is AuthOutcome.MISSING


def test_uri_must_match_request_uri() -> None:
    auth = make_auth()
    value = answer(first_challenge(auth), uri="sip:elsewhere")
    result = auth.verify("REGISTER", URI, [value], 1.0)
    assert (result.outcome, result.reason) == (AuthOutcome.FAILED, "uri mismatch")
    assert auth.verify("REGISTER", f"  {URI} ", [answer(first_challenge(auth))], 1.0).outcome is (
        AuthOutcome.OK
    )


def test_opaque_must_be_ours_when_sent() -> None:
    auth = make_auth()
    creds = parse_credentials(answer(first_challenge(auth)))
    bad = auth.verify("REGISTER", URI, [str(dataclasses.replace(creds, opaque="nope"))], 1.0)
    assert (bad.outcome, bad.reason) == (AuthOutcome.FAILED, "opaque mismatch")
    omitted = auth.verify("REGISTER", URI, [str(dataclasses.replace(creds, opaque=None))], 1.0)
    assert omitted.outcome is AuthOutcome.OK


def test_uppercase_response_hex_is_accepted() -> None:
    auth = make_auth()
    creds = parse_credentials(answer(first_challenge(auth)))
    upper = str(dataclasses.replace(creds, response=creds.response.upper()))
    assert auth.verify("REGISTER", URI, [upper], 1.0).outcome is AuthOutcome.OK


def test_reasons_never_carry_secrets() -> None:
    auth = make_auth(nonce_ttl=10.0)
    challenge = first_challenge(auth)
    value = answer(challenge)
    creds = parse_credentials(value)
    ha1 = hashlib.sha256(f"1001:tsunagu:{USERS['1001']}".encode()).hexdigest()
    results = [
        auth.verify("REGISTER", URI, [value], 1.0),
        auth.verify("REGISTER", URI, [value], 2.0),
        auth.verify("REGISTER", URI, [answer(challenge, password="guess", nc=2)], 2.0),
        auth.verify("REGISTER", URI, [answer(challenge, nc=3)], 20.0),
    ]
    assert {r.outcome for r in results} == {
        AuthOutcome.OK, AuthOutcome.FAILED, AuthOutcome.STALE
    }  # fmt: skip
    for result in results:
        text = repr(result)
        for secret in (USERS["1001"], "guess", ha1, creds.response):
            assert secret not in text


def test_nonce_table_purges_expired_and_respects_its_cap() -> None:
    auth = make_auth(nonce_ttl=10.0, max_tracked_nonces=3)
    challenges = [first_challenge(auth, float(t)) for t in range(5)]
    for t, challenge in enumerate(challenges):
        assert auth.verify("REGISTER", URI, [answer(challenge)], float(t)).outcome is AuthOutcome.OK
        assert auth.tracked_nonces <= 3
    # The two oldest were evicted: their next use is STALE (never a replay window).
    evicted = auth.verify("REGISTER", URI, [answer(challenges[0], nc=1)], 5.0)
    assert (evicted.outcome, evicted.reason) == (AuthOutcome.STALE, "nonce forgotten")
    kept = auth.verify("REGISTER", URI, [answer(challenges[4], nc=1)], 5.0)
    assert (kept.outcome, kept.reason) == (AuthOutcome.FAILED, "replay")
    # After the lifetime, everything is purged lazily by the next call.
    auth.verify("REGISTER", URI, [], 100.0)
    assert auth.tracked_nonces == 0


@given(st.lists(st.text(max_size=200), max_size=4))
def test_verify_never_raises_on_arbitrary_values(values: list[str]) -> None:
    auth = make_auth()
    result = auth.verify("REGISTER", URI, values, 1.0)
    assert result.outcome in (AuthOutcome.MISSING, AuthOutcome.FAILED)


def test_constructor_refuses_bad_configuration() -> None:
    lookup: Callable[[str], str | None] = USERS.get
    with pytest.raises(ValueError, match="unsupported"):
        DigestAuthenticator("r", lookup, algorithms=("SHA-1",))
    with pytest.raises(ValueError, match="at least one"):
        DigestAuthenticator("r", lookup, algorithms=())
    with pytest.raises(ValueError, match="at most once"):
        DigestAuthenticator("r", lookup, algorithms=("MD5", "md5"))
    with pytest.raises(ValueError, match="nonce_ttl"):
        DigestAuthenticator("r", lookup, nonce_ttl=0)
