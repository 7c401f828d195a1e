"""The three-way rule as a pure function: examples and properties."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from calsync.engine.threeway import Decision, Sides, decide
from calsync.model import CONFLICT_POLICIES


def sides(**changes: object) -> Sides:
    base = dict(link_etag="e1", remote_etag="e2", base_version=3, local_version=3, local_hash="L",
                remote_hash="R", local_deleted=False, remote_deleted=False)
    base.update(changes)
    return Sides(**base)  # type: ignore[arg-type]


def test_same_etag_is_nothing_even_with_a_local_change() -> None:
    assert decide(sides(remote_etag="e1", local_version=4), "ask") is Decision.NOTHING


def test_remote_only_change_is_taken() -> None:
    assert decide(sides(), "ask") is Decision.TAKE_REMOTE


def test_both_changed_to_the_same_content_fast_forwards() -> None:
    assert decide(sides(local_version=4, local_hash="X", remote_hash="X"), "ask") is Decision.FAST_FORWARD


def test_both_changed_differently_asks() -> None:
    assert decide(sides(local_version=4), "ask") is Decision.CONFLICT


def test_both_deleted_is_agreement() -> None:
    assert decide(sides(local_version=4, local_deleted=True, remote_deleted=True, remote_etag=None,
                        remote_hash=None), "ask") is Decision.FAST_FORWARD


def test_repeated_remote_deletion_is_nothing() -> None:
    assert decide(sides(remote_deleted=True, link_remote_deleted=True, remote_etag=None), "ask") is Decision.NOTHING


@given(
    policy=st.sampled_from(CONFLICT_POLICIES),
    local_version=st.integers(1, 5), base_version=st.integers(1, 5),
    local_hash=st.sampled_from("AB"), remote_hash=st.sampled_from("AB"),
    remote_deleted=st.booleans(), local_deleted=st.booleans(),
)
def test_properties(policy: str, local_version: int, base_version: int, local_hash: str, remote_hash: str,
                    remote_deleted: bool, local_deleted: bool) -> None:
    s = sides(
        local_version=local_version, base_version=base_version, local_hash=local_hash,
        remote_hash=None if remote_deleted else remote_hash, remote_etag=None if remote_deleted else "e2",
        remote_deleted=remote_deleted, local_deleted=local_deleted,
    )
    decision = decide(s, policy)
    if local_version == base_version:
        assert decision is Decision.TAKE_REMOTE  # an untouched local copy always follows the remote
    else:
        assert decision is not Decision.TAKE_REMOTE or policy in ("remote-wins", "latest-wins")
        if policy == "ask" and decision is not Decision.FAST_FORWARD:
            assert decision is Decision.CONFLICT  # 'ask' never silently drops a local edit


def test_a_remote_change_outside_the_modelled_fields_lets_the_local_edit_through() -> None:
    # base content B, local changed to L, remote ETag changed but its content is still B
    assert decide(sides(local_version=4, local_hash="L", remote_hash="B", base_hash="B"), "ask") is Decision.LOCAL_WINS
