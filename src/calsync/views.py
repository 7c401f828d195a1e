"""JSON shapes shown to people and programs (CLI --json now, the REST API later): one place, one shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from calsync.store.rows import BindingRow, EventWithLinks


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def event_json(row: EventWithLinks) -> dict[str, Any]:
    """An event row from event_store.list_events as the public JSON object."""
    return {
        "id": row["id"],
        "calendar_id": row["calendar_id"],
        "title": row["title"],
        "description": row["description"],
        "location": row["location"],
        "start": row["start"],
        "end": row["end"],
        "all_day": row["all_day"],
        "time_zone": row["time_zone"],
        "status": row["status"],
        "recurrence": row["recurrence"],
        "recurring_event_id": row["recurring_event_id"],
        "original_start": row["original_start"],
        "attendees": row["attendees"],
        "conference": row["conference"],
        "version": row["version"],
        "source": row["source"],
        "updated_at_source": row["updated_at_source"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "deleted": row["deleted"],
        # a tombstone says who deleted it, when, and what proved it (docs/ARCHITECTURE.md, "Deletions")
        "deletion": {"by": row["deleted_by"], "at": _iso(row["deleted_at"]), "proof": row["deletion_proof"]}
        if row["deleted"]
        else None,
        "links": [
            {
                "binding_id": link["binding_id"],
                "remote_id": link["remote_id"],
                "etag": link["etag"],
                "base_version": link["base_version"],
                "remote_deleted": link["remote_deleted"],
            }
            for link in row["links"]
        ],
    }


def binding_json(row: BindingRow, now: datetime) -> dict[str, Any]:
    """A binding with its sync health: last sync, token age, status, error."""
    obtained = row["sync_token_obtained_at"]
    return {
        "id": row["id"],
        "calendar_id": row["calendar_id"],
        "account_id": row["account_id"],
        "remote_calendar_id": row["remote_calendar_id"],
        "direction": row["direction"],
        "conflict_policy": row["conflict_policy"],
        "has_sync_token": bool(row["sync_token"]),
        "token_age_seconds": round((now - obtained).total_seconds()) if obtained else None,
        "last_sync_at": _iso(row["last_sync_at"]),
        "last_full_sync_at": _iso(row["last_full_sync_at"]),
        "last_sync_status": row["last_sync_status"],
        "last_sync_stats": row["last_sync_stats"],
        "last_error": row["last_error"],
    }


def jsonable(value: Any) -> Any:
    """datetimes to ISO strings, recursively, for json.dumps."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
