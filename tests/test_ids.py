"""Local ids: random, well-formed, never repeated, not even by a forked child."""
from __future__ import annotations

import os
import re
import threading

from calsync.store.common import new_id


def test_ids_are_32_hex_characters_and_distinct() -> None:
    ids = [new_id() for _ in range(5000)]  # several blocks
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_share_an_id() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in found for i in out]
    assert len(set(every)) == len(every) == 8000


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    new_id()  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, "".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = "".join(new_id() for _ in range(10))
    child_ids = {child[i:i + 32] for i in range(0, len(child), 32)}
    parent_ids = {parent[i:i + 32] for i in range(0, len(parent), 32)}
    assert len(child_ids) == 10 and not child_ids & parent_ids
