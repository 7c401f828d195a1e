"""`calsync sync`'s summary for a person, printed from the report's JSON form (SyncReport.as_dict),
so a report that came back from a running service prints exactly like one made in this process.

One block per binding (its whole id, then what came in and what went out), so it reads at 80 columns;
a long message folds onto the next lines. Provider messages are outside text: printed escaped."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from calsync.safe_text import clean, markup_safe


def print_report(report: dict[str, Any], console: Console, err: Console) -> None:
    pushed = {
        r["binding_id"]: r
        for r in report["outbound"]
        if r["created"] or r["updated"] or r["deleted"] or r["held"] or r["status"] != "ok"
    }
    order = [r["binding_id"] for r in report["inbound"]]
    order += [b for b in pushed if b not in order]
    inbound = {r["binding_id"]: r for r in report["inbound"]}
    for binding_id in order:
        lines: list[tuple[str, Text]] = []
        r = inbound.get(binding_id)
        if r is not None:
            kind = "full" + (" (token reset)" if r["token_reset"] else "") if r["full"] else "incremental"
            lines.append(
                (
                    "in",
                    Text(
                        f"{kind}: {r['pages']} page(s), {r['requests']} request(s); created {r['created']}, "
                        f"updated {r['updated']}, deleted {r['deleted']}, conflicts {r['conflicts']}"
                    ),
                )
            )
            if r["status"] != "ok":
                lines.append(("", Text.assemble((r["status"], "red"), ": ", clean(r["message"]))))
        out = pushed.get(binding_id)
        if out is not None:
            lines.append(
                (
                    "out",
                    Text(
                        f"created {out['created']}, updated {out['updated']}, deleted {out['deleted']}, "
                        f"held (conflict) {out['held']}; {out['requests']} request(s)"
                    ),
                )
            )
            if out["status"] != "ok":
                lines.append(("", Text.assemble((out["status"], "yellow"), ": ", clean(out["message"]))))
        bad = [x["status"] for x in (r, out) if x is not None and x["status"] != "ok"]
        status = f"[red]{markup_safe(bad[0])}[/red]" if bad else "ok"
        console.print(f"binding {binding_id}: {status}", highlight=False)
        grid = Table.grid(Column(no_wrap=True), Column(overflow="fold"), padding=(0, 2))
        for label, text in lines:
            grid.add_row(Text("  " + label), text)
        console.print(grid)
    if not order:
        console.print("no binding to sync")
    c = report["conferences"]
    if c["processed"]:
        console.print(
            f"conferences: {c['processed']} checked, {c['created']} created, {c['updated']} updated, "
            f"{c['deleted']} deleted, {c['unchanged']} unchanged, {c['retried']} to retry, "
            f"{c['failed']} failed",
            highlight=False,
        )
        for error in c["errors"][:5]:
            err.print(f"  [yellow]conference work:[/yellow] {markup_safe(error)}")
