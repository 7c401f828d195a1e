"""`calsync keys ...`: the keys secrets are sealed under (store/sealing.py): which key seals how many
values, rotation to a new key while services keep running, and a new key for CALSYNC_SECRET_KEY.
No key is ever printed, except by `keys generate`, which exists to print one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.output import console, err, fail, markup_safe, print_json, print_table
from calsync.store import keys as key_store
from calsync.store import sealing

app = typer.Typer(help="The keys credentials are sealed under (encrypted at rest).", no_args_is_help=True)


@app.command("status")
def keys_status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Where the keys come from, and how many stored secrets each key seals (a key in use that is
    not at hand is listed as missing)."""
    with database(db) as engine, engine.connect() as conn:
        counts = key_store.sealed_counts(conn)
        try:
            ring: sealing.Keyring | None = key_store.keyring(conn)
            problem = None
        except sealing.SecretKeyError as exc:
            ring, problem = None, str(exc)
    ids = list(ring.ids) if ring else []
    used = sorted({kid for per_key in counts.values() for kid in per_key if kid != "plain"} - set(ids))
    rows: list[dict[str, Any]] = []
    for kid in [*ids, *used]:
        rows.append(
            {
                "key_id": kid,
                "state": "current" if ids and kid == ids[0] else "old" if kid in ids else "missing",
                "values": {column: per_key[kid] for column, per_key in counts.items() if kid in per_key},
            }
        )
    plain = {column: per_key["plain"] for column, per_key in counts.items() if "plain" in per_key}
    source = ring.source if ring else None
    if as_json:
        print_json({"source": source, "problem": problem, "keys": rows, "plain": plain})
    else:
        console.print(f"keys from: {source or '(none)'}", highlight=False)
        if problem:
            err.print(f"[red]error:[/red] {markup_safe(problem)}")
        print_table(
            ("key id", "state", "sealed values"),
            ((r["key_id"], r["state"], ", ".join(f"{c}: {n}" for c, n in r["values"].items()) or "-") for r in rows),
        )
        if plain:
            console.print(f"not sealed yet: {plain}", highlight=False)
    if used or problem:
        raise typer.Exit(1)


@app.command("rotate")
def keys_rotate(
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Leave the old keys in the key file (drop them later: keys retire).")
    ] = False,
    grace: Annotated[
        float, typer.Option(help="Seconds between writing the new key and re-sealing, for seals in flight.")
    ] = 2.0,
    batch_size: Annotated[int, typer.Option(help="Values re-sealed per transaction.")] = 200,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-seal every stored secret under a new key, without stopping services.

    With a key file: a new key goes first in it, every value is re-sealed in small transactions (the
    old keys still open values meanwhile, and running processes re-read the file), then the old keys
    leave the file. With CALSYNC_SECRET_KEY: put a new key first in the variable of every process
    (`calsync keys generate` makes one), then run this to re-seal under it."""
    with database(db) as engine:
        try:
            done = key_store.rotate(engine, keep_old=keep_old, grace=grace, batch_size=batch_size)
        except (key_store.RotationError, sealing.RotationBusy) as exc:
            raise fail(str(exc)) from exc
    summary = {
        "source": done.source,
        "current": done.new_id,
        "resealed": done.report.resealed,
        "per_column": done.report.per_column,
        "passes": done.report.passes,
        "raced": done.report.raced,
        "retired": done.retired,
        "still_held": done.kept,
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"re-sealed {done.report.resealed} value(s) under key {done.new_id} in {done.report.passes} pass(es)",
        highlight=False,
    )
    if done.retired:
        console.print(f"retired key(s) {', '.join(done.retired)} from {done.source}", highlight=False)
    elif done.kept:
        hint = (
            "remove them from the variable once every process has the new one"
            if done.source == sealing.ENV_KEYS
            else "`calsync keys retire` drops them"
        )
        console.print(f"no value needs key(s) {', '.join(done.kept)} any more; {hint}", highlight=False)


@app.command("retire")
def keys_retire(db: DbOption = None) -> None:
    """Drop from the key file every old key no stored value is sealed under (after rotate --keep-old)."""
    with database(db) as engine:
        try:
            retired = key_store.retire_unused(engine)
        except (key_store.RotationError, sealing.RotationBusy) as exc:
            raise fail(str(exc)) from exc
    console.print(f"retired: {', '.join(retired) or 'nothing'}", highlight=False)


@app.command("generate")
def keys_generate() -> None:
    """Print a new key, for CALSYNC_SECRET_KEY (stored nowhere: with a key file, use `keys rotate`)."""
    err.print(
        f"a new key for {sealing.ENV_KEYS} (put it first, keep the current one after a comma, then run "
        "`calsync keys rotate`); it is printed this once and stored nowhere"
    )
    typer.echo(sealing.new_key())
