"""Keys are read from the store at most once a second per key; a revocation still takes effect
within that second, and at once through the service that made it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kinema.config import Settings
from kinema.errors import Unauthorized
from kinema.service import KEY_CACHE_SECONDS, KeyService
from kinema.store.sql import SqlJobStore, open_store_url
from tests.conftest import Clock


@pytest.fixture
def store(settings: Settings) -> Iterator[SqlJobStore]:
    opened = open_store_url(settings.database_url)
    yield opened
    opened.close()


def test_a_key_revoked_elsewhere_is_refused_once_its_cached_read_expires(
    store: SqlJobStore, settings: Settings
) -> None:
    clock = Clock()
    api = KeyService(store, clock)
    key, raw = api.create("alice")
    assert api.authenticate(raw).id == key.id
    assert api.cached(raw) is not None

    other_process = open_store_url(settings.database_url)
    try:
        assert KeyService(other_process).revoke(key.id) == 1
    finally:
        other_process.close()

    clock.now += KEY_CACHE_SECONDS / 2
    assert api.authenticate(raw).id == key.id  # the read of half a second ago still stands
    clock.now += KEY_CACHE_SECONDS / 2
    assert api.cached(raw) is None
    with pytest.raises(Unauthorized):
        api.authenticate(raw)


def test_a_key_revoked_through_the_same_service_is_refused_at_once(store: SqlJobStore) -> None:
    api = KeyService(store, Clock())
    key, raw = api.create("bob")
    api.authenticate(raw)
    api.revoke(key.id)
    with pytest.raises(Unauthorized):
        api.authenticate(raw)


def test_unknown_keys_are_never_cached(store: SqlJobStore) -> None:
    api = KeyService(store, Clock())
    with pytest.raises(Unauthorized):
        api.authenticate("kin_not_a_key")
    assert api.cached("kin_not_a_key") is None


def test_a_read_racing_a_revocation_is_not_kept(store: SqlJobStore) -> None:
    """A request read the key just before another revoked it: its stale read must not be cached
    (the revocation would otherwise be undone for a second)."""
    api = KeyService(store, Clock())
    key, raw = api.create("carol")

    class RevokingStore:
        """The real store, but the key is revoked between the read and its caching."""

        revoked = False

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def find_key(self, key_hash: str) -> object:
            found = store.find_key(key_hash)
            if not self.revoked:
                self.revoked = True
                api.revoke(key.id)
            return found

    api._store = RevokingStore()  # type: ignore[assignment]
    assert api.authenticate(raw).id == key.id  # this read began before the revocation
    api._store = store
    with pytest.raises(Unauthorized):
        api.authenticate(raw)
