"""The warm clients a running service keeps between the syncs it is asked for."""
from __future__ import annotations

import threading

from calsync.engine.pool import WarmProviders
from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider


def account(password: str = "secret", account_id: str = "acc-1") -> Account:
    return Account(account_id, "caldav", "alice", "http://127.0.0.1:9/dav/", {"username": "alice", "password": password})


def is_closed(client: Provider) -> bool:
    return bool(client.http._client.is_closed)  # type: ignore[attr-defined]


def test_a_client_given_back_is_lent_again_and_closed_with_the_pool() -> None:
    warm = WarmProviders(provider_for)
    first = warm.borrow(account())
    warm.give_back(first)
    again = warm.borrow(account())
    assert again is first and not is_closed(first), "the next sync reuses the client and its connections"
    warm.give_back(again)
    warm.close()
    assert is_closed(first)
    late = warm.borrow(account())
    warm.give_back(late)
    assert is_closed(late), "a client given back after the pool closed is closed, not kept"


def test_two_syncs_at_once_never_share_a_client() -> None:
    warm = WarmProviders(provider_for)
    one, two = warm.borrow(account()), warm.borrow(account())
    assert one is not two
    warm.give_back(one)
    warm.give_back(two)
    assert {id(warm.borrow(account())), id(warm.borrow(account()))} == {id(one), id(two)}


def test_new_credentials_get_a_new_client_and_the_old_one_is_closed() -> None:
    warm = WarmProviders(provider_for)
    old = warm.borrow(account("old password"))
    lent_during_change = warm.borrow(account("old password"))
    warm.give_back(old)
    new = warm.borrow(account("new password"))
    assert new is not old and is_closed(old), "an idle client with the old password is dropped"
    warm.give_back(lent_during_change)
    assert is_closed(lent_during_change), "one lent while the password changed is closed when it comes back"
    warm.give_back(new)
    assert warm.borrow(account("new password")) is new
    other = warm.borrow(account(account_id="acc-2"))
    assert other is not new, "each account has its own clients"


def test_only_a_few_idle_clients_are_kept_per_account() -> None:
    warm = WarmProviders(provider_for, keep=2)
    lent = [warm.borrow(account()) for _ in range(4)]
    for client in lent:
        warm.give_back(client)
    assert [is_closed(c) for c in lent] == [False, False, True, True]


def test_lending_is_safe_from_many_threads() -> None:
    warm = WarmProviders(provider_for, keep=8)
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            client = warm.borrow(account())
            with lock:
                assert id(client) not in seen, "a client lent to two syncs at once"
                seen.append(id(client))
            with lock:
                seen.remove(id(client))
            warm.give_back(client)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    warm.close()
