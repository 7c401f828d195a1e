"""The claim's budget spending for many accounts in one statement (scheduling.spend_many), on SQLite
and PostgreSQL: it takes what the one-account guarded UPDATE (_spend) would, account by account,
including an account whose bucket holds fewer requests than asked (tried again alone)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update

from calsync.budgets import RequestBudget
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import db, scheduling
from calsync.store.schema import accounts


@pytest.fixture()
def store(db_url: str) -> Iterator[Engine]:
    engine = db.open_engine(db_url)
    yield engine
    engine.dispose()


def _accounts(engine: Engine, n: int) -> list[str]:
    with engine.begin() as conn:
        return [account_store.create_account(conn, "google", f"u{i}", "http://x", {"token": "t"}) for i in range(n)]


def _spent(engine: Engine) -> dict[str, tuple[float, object]]:
    with engine.begin() as conn:
        rows = conn.execute(select(accounts.c.id, accounts.c.budget_spent_until, accounts.c.served_at)).all()
    return {r.id: (float(r.budget_spent_until), r.served_at) for r in rows}


def test_many_accounts_spend_as_each_alone_would(store: Engine) -> None:
    budget = RequestBudget(2.0, 5)  # 0.5 s a request, five at once
    full, part, empty, free = _accounts(store, 4)
    now = utcnow()
    epoch = now.timestamp()
    with store.begin() as conn:  # part: two requests left in its bucket; empty: none
        conn.execute(update(accounts).where(accounts.c.id == part).values(budget_spent_until=epoch + 1.5))
        conn.execute(update(accounts).where(accounts.c.id == empty).values(budget_spent_until=epoch + 2.5))
    with store.begin() as conn:
        taken = scheduling.spend_many(
            conn, {full: (3, budget), part: (4, budget), empty: (1, budget), free: (4, None)}, epoch, served_at=now
        )
    assert taken == {full: 3, part: 2, empty: 0, free: 4}
    spent = _spent(store)
    assert spent[full][0] == pytest.approx(epoch + 1.5)  # three requests from now
    assert spent[part][0] == pytest.approx(epoch + 2.5)  # its last two
    assert spent[empty][0] == pytest.approx(epoch + 2.5)  # untouched
    assert spent[free][0] == 0.0  # no budget: nothing spent, only served
    for account_id in (full, part, free):
        assert spent[account_id][1] == now
    assert spent[empty][1] is None  # nothing taken: not served

    # a later claim spends from where the first left off (the bucket of `full` held two more)
    with store.begin() as conn:
        again = scheduling.spend_many(conn, {full: (4, budget)}, epoch, served_at=now)
    assert again == {full: 2}
    assert _spent(store)[full][0] == pytest.approx(epoch + 2.5)
