"""The shared listener access rules: tokens, loopback, origins and Host names (unit)."""

from __future__ import annotations

import pytest

from teamster.engine.access import (
    ListenerAccess,
    Unguarded,
    bearer,
    host_allowed,
    is_loopback,
    origin_allowed,
    refuse_unguarded,
    token_matches,
)


def test_the_token_comes_from_the_config_then_the_environment() -> None:
    assert ListenerAccess(token="s3cret").resolved_token({"TEAMSTER_TOKEN": "other"}) == "s3cret"
    assert ListenerAccess().resolved_token({"TEAMSTER_TOKEN": "from-env"}) == "from-env"
    assert ListenerAccess(token_env="MY_TOKEN").resolved_token({"MY_TOKEN": "mine", "TEAMSTER_TOKEN": "x"}) == "mine"
    assert ListenerAccess().resolved_token({"TEAMSTER_TOKEN": ""}) is None
    assert ListenerAccess(token_env=None).resolved_token({"TEAMSTER_TOKEN": "x"}) is None


def test_a_token_in_the_config_does_not_show_in_its_repr() -> None:
    assert "s3cret" not in repr(ListenerAccess(token="s3cret"))


def test_bearer_reads_only_the_bearer_scheme() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    assert bearer({"authorization": "bearer  abc "}) == "abc"
    assert bearer({"authorization": "Basic abc"}) is None
    assert bearer({"authorization": "Bearer "}) is None
    assert bearer({}) is None


def test_tokens_match_exactly() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("ab", "abc")
    assert not token_matches(None, "abc")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "192.168.1.2", "example.com", "localhost.evil"])
def test_hosts_beyond_this_machine(host: str) -> None:
    assert not is_loopback(host)


def test_an_unguarded_listener_beyond_loopback_is_refused() -> None:
    refuse_unguarded("iii-http", "127.0.0.1", guarded=False, how="set a token")
    refuse_unguarded("iii-http", "0.0.0.0", guarded=True, how="set a token")
    with pytest.raises(Unguarded, match=r"iii-http listens on 0.0.0.0, beyond this machine.*set a token"):
        refuse_unguarded("iii-http", "0.0.0.0", guarded=False, how="set a token")


def test_host_names_a_tokenless_listener_answers() -> None:
    assert host_allowed("127.0.0.1:3111", [])
    assert host_allowed("localhost:3111", [])
    assert host_allowed("[::1]:3111", [])
    assert not host_allowed("evil.example:3111", [])
    assert not host_allowed(None, [])
    assert host_allowed("teamster.internal:3111", ["teamster.internal"])


def test_origins() -> None:
    assert origin_allowed(None, "127.0.0.1:3111", [])  # not a browser
    assert origin_allowed("http://127.0.0.1:3111", "127.0.0.1:3111", [])  # same origin
    assert not origin_allowed("https://evil.example", "127.0.0.1:3111", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:3111", [])  # another port is another origin
    assert not origin_allowed("null", "127.0.0.1:3111", [])
    assert origin_allowed("https://app.example", "127.0.0.1:3111", ["https://app.example"])
    assert origin_allowed("https://any.example", "127.0.0.1:3111", ["*"])
