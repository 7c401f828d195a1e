"""Google service-account keys, stored once: an organisation connects every member's calendar with one
key (domain-wide delegation), so each account's credentials hold a reference (`key_ref`) and the key
itself lives, sealed, in one row. Accounts are read and written with the key in place
(store/accounts.py calls `inline` and `extract`), so nothing above the store knows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from calsync.model import utcnow
from calsync.store.common import NotFound, new_id
from calsync.store.keys import open_sealed, seal
from calsync.store.schema import service_account_keys as keys_table


def extract(conn: Connection, credentials: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials as stored: a service-account key replaced by the reference of its one row."""
    key = credentials.get("key")
    if credentials.get("grant") != "google-service-account" or not isinstance(key, Mapping):
        return dict(credentials)
    stored = {k: v for k, v in credentials.items() if k != "key"}
    stored["key_ref"] = _put(conn, key)
    return stored


def inline(conn: Connection, credentials: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials as used: the referenced key put back in place."""
    ref = credentials.get("key_ref")
    if not ref:
        return dict(credentials)
    row = conn.execute(select(keys_table.c.key_sealed).where(keys_table.c.id == ref)).first()
    if row is None:
        raise NotFound(f"no service-account key with id {ref!r}")
    key = json.loads(open_sealed(conn, row.key_sealed, f"service-account key {ref}"))
    return {**{k: v for k, v in credentials.items() if k != "key_ref"}, "key": key}


def _put(conn: Connection, key: Mapping[str, Any]) -> str:
    """The row of this key (same client and key id), made on first sight."""
    email, key_id = str(key.get("client_email") or ""), str(key.get("private_key_id") or "")
    found = conn.execute(
        select(keys_table.c.id).where(keys_table.c.client_email == email, keys_table.c.private_key_id == key_id)
    ).first()
    if found is not None:
        return str(found.id)
    ref = new_id()
    conn.execute(
        keys_table.insert().values(
            id=ref,
            client_email=email,
            private_key_id=key_id,
            key_sealed=seal(conn, json.dumps(dict(key))),
            created_at=utcnow(),
        )
    )
    return ref


def count(conn: Connection) -> int:
    return len(conn.execute(select(keys_table.c.id)).all())
