"""Sync health, as the status API, `calsync status` and the web page show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import conferences as conference_store
from calsync.store import conflicts as conflict_store
from calsync.store import outbox as outbox_store
from calsync.store import scheduling
from calsync.store.sealing import SecretKeyError
from calsync.views import binding_json, jsonable


def status_snapshot(engine: Engine, user_id: str | None = None) -> dict[str, Any]:
    """Per binding: last sync, token age, channel expiry, dirty/queued, last error; per account: state.
    With `user_id`, only that user's accounts, bindings, conflicts and backlogs."""
    now = utcnow()
    with engine.begin() as conn:
        channels = scheduling.channel_health(conn)
        bindings = []
        for row in account_store.list_bindings(conn, user_id=user_id):
            channel = channels.get(row["id"])
            bindings.append(
                binding_json(row, now)
                | {
                    "last_success_at": jsonable(row["sync_token_updated_at"]),
                    "outbox_backlog": outbox_store.backlog(conn, row["id"]),
                    "dirty": row["dirty_at"] is not None,
                    "leased": row["lease_until"] is not None and row["lease_until"] > now,
                    "next_poll_at": jsonable(row["next_poll_at"]),
                    "channel": None
                    if channel is None
                    else {
                        "expiration": jsonable(channel["expiration"]),
                        "confirmed": channel["confirmed_at"] is not None,
                        "last_message_at": jsonable(channel["last_message_at"]),
                        "messages": channel["messages"],
                    },
                }
            )
        accounts = [
            {
                "id": a["id"],
                "provider": a["provider"],
                "name": a["name"],
                "state": a["state"],
                "last_error": a["last_error"],
                "backoff_until": jsonable(a["backoff_until"]),
                **_who(conn, a["id"]),
            }
            for a in account_store.list_accounts(conn, user_id)
        ]
        return {
            "accounts": accounts,
            "bindings": bindings,
            "open_conflicts": len(conflict_store.list_conflicts(conn, user_id=user_id)),
            "conference_backlog": conference_store.backlog(conn, user_id),
            "outbox_backlog": outbox_store.backlog(conn)
            if user_id is None
            else sum(binding["outbox_backlog"] for binding in bindings),
        }


# an OAuth grant a person gave through a consent page -> the flow that gives it again (/oauth/<flow>/start)
_CONSENT_FLOWS = {"google-user": "google", "microsoft-user": "microsoft"}


def _who(conn: Connection, account_id: str) -> dict[str, Any]:
    """The person an account acts for (`user`: an address, never a token) and the consent flow that
    renews it (`connect`: google | microsoft, None for static tokens, service accounts, app-only).

    Both live in the sealed credentials: a status that cannot open them shows None rather than fail,
    as the syncs report the key problem themselves."""
    try:
        credentials = account_store.get_account(conn, account_id).credentials
    except SecretKeyError:
        return {"user": None, "connect": None}
    user = credentials.get("user") or credentials.get("subject") or credentials.get("mailbox")
    return {"user": str(user) if user else None, "connect": _CONSENT_FLOWS.get(str(credentials.get("grant")))}
