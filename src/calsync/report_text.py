"""`calsync sync`'s summary for a person, printed from the report's JSON form (SyncReport.as_dict),
so a report that came back from a running service prints exactly like one made in this process."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_report(report: dict[str, Any], console: Console, err: Console) -> None:
    table = Table("binding", "kind", "pages", "requests", "created", "updated", "deleted", "conflicts", "status")
    for r in report["inbound"]:
        kind = "full" + (" (token reset)" if r["token_reset"] else "") if r["full"] else "incremental"
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/red]: {r['message']}"
        table.add_row(
            r["binding_id"][:12],
            kind,
            str(r["pages"]),
            str(r["requests"]),
            str(r["created"]),
            str(r["updated"]),
            str(r["deleted"]),
            str(r["conflicts"]),
            status,
        )
    console.print(table)
    pushed = [
        r
        for r in report["outbound"]
        if r["created"] or r["updated"] or r["deleted"] or r["held"] or r["status"] != "ok"
    ]
    if pushed:
        out = Table("binding", "created", "updated", "deleted", "held (conflict)", "requests", "status")
        for r in pushed:
            status = r["status"] if r["status"] == "ok" else f"[yellow]{r['status']}[/yellow]: {r['message'] or ''}"
            out.add_row(
                r["binding_id"][:12],
                str(r["created"]),
                str(r["updated"]),
                str(r["deleted"]),
                str(r["held"]),
                str(r["requests"]),
                status,
            )
        console.print(out)
    c = report["conferences"]
    if c["processed"]:
        console.print(
            f"conferences: {c['processed']} checked, {c['created']} created, {c['updated']} updated, "
            f"{c['deleted']} deleted, {c['unchanged']} unchanged, {c['retried']} to retry, "
            f"{c['failed']} failed"
        )
        for error in c["errors"][:5]:
            err.print(f"  [yellow]conference work:[/yellow] {error}")
