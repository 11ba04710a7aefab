"""API keys of the HTTP edge: header parsing and the 401 / 403 / allow decision."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from itinerary.auth import CHALLENGE, Access, ApiKeys, bearer_token
from itinerary.config.runtime import SecuritySettings

INGEST = "ingest-key-0123456789"
ADMIN = "admin-key-9876543210"
KEYS = ApiKeys(ingest=[INGEST, "second-ingest-key"], admin=[ADMIN])


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer a b", None),
        ("abc", None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_no_keys_means_an_open_api() -> None:
    keys = ApiKeys()
    assert not keys.enabled
    assert keys.check(None, Access.ADMIN) is None
    assert keys.check("Bearer anything", Access.INGEST) is None


@pytest.mark.parametrize("need", [Access.INGEST, Access.ADMIN])
def test_missing_malformed_and_wrong_keys_get_the_same_401(need: Access) -> None:
    denials = [KEYS.check(h, need) for h in (None, "Basic x", f"Bearer {INGEST}x", f"Bearer {ADMIN[:-1]}")]
    assert all(d is not None for d in denials)
    assert len({(d.status, d.error, tuple(d.headers.items())) for d in denials if d}) == 1
    first = denials[0]
    assert first is not None and first.status == 401 and first.headers == CHALLENGE


def test_ingest_keys_post_events_but_get_403_on_admin_endpoints() -> None:
    assert KEYS.check(f"Bearer {INGEST}", Access.INGEST) is None
    assert KEYS.check("Bearer second-ingest-key", Access.INGEST) is None
    denial = KEYS.check(f"Bearer {INGEST}", Access.ADMIN)
    assert denial is not None and denial.status == 403 and "WWW-Authenticate" not in denial.headers


def test_admin_keys_may_do_everything() -> None:
    assert KEYS.check(f"Bearer {ADMIN}", Access.INGEST) is None
    assert KEYS.check(f"Bearer {ADMIN}", Access.ADMIN) is None
    assert KEYS.role(ADMIN) is Access.ADMIN
    assert KEYS.role(INGEST) is Access.INGEST
    assert KEYS.role("nope") is None


def test_a_key_in_both_lists_is_an_admin_key() -> None:
    assert ApiKeys(ingest=["k"], admin=["k"]).role("k") is Access.ADMIN


def test_an_empty_configured_key_keeps_auth_on_and_matches_nothing() -> None:
    keys = ApiKeys(ingest=[""])
    assert keys.enabled
    denial = keys.check("Bearer ", Access.INGEST)
    assert denial is not None and denial.status == 401


def test_keys_from_settings_never_show() -> None:
    settings = SecuritySettings(ingest_keys=(SecretStr(INGEST),), admin_keys=(SecretStr(ADMIN),))
    keys = ApiKeys.from_settings(settings)
    assert keys.check(f"Bearer {ADMIN}", Access.ADMIN) is None
    for shown in (repr(keys), str(keys), repr(settings)):
        assert INGEST not in shown and ADMIN not in shown


def test_local_keys_are_random_kept_and_masked() -> None:
    from itinerary.keys import ADMIN_KEY_ENV, INGEST_KEY_ENV, ensure_local_keys

    env: dict[str, str] = {ADMIN_KEY_ENV: "chosen-admin"}
    keys = ensure_local_keys(env)
    assert keys.admin == "chosen-admin" and env[INGEST_KEY_ENV] == keys.ingest and len(keys.ingest) >= 24
    assert ensure_local_keys(env) == keys
    assert keys.ingest not in repr(keys) and "chosen-admin" not in repr(keys)
    assert keys.ingest_headers == {"Authorization": f"Bearer {keys.ingest}"}
