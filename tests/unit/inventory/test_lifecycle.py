"""The pump lifecycle: exactly the contract's moves, and no sequence of moves escapes it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.inventory.lifecycle import (
    INITIAL_STATUS,
    Move,
    MoveRefused,
    PumpStatus,
    allowed_moves,
    is_terminal,
    next_status,
)

S, M = PumpStatus, Move
# CONTRACT.md, Inventory: the only edges there are
CONTRACT_EDGES = {
    (S.IN_STOCK, M.IMPLANT, S.IMPLANTED),
    (S.IMPLANTED, M.EXPLANT, S.EXPLANTED),
    (S.IN_STOCK, M.QUARANTINE, S.QUARANTINED),
    (S.QUARANTINED, M.RELEASE, S.IN_STOCK),
    (S.IN_STOCK, M.RETIRE, S.RETIRED),
    (S.QUARANTINED, M.RETIRE, S.RETIRED),
    (S.EXPLANTED, M.RETIRE, S.RETIRED),
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("move", list(M))
def test_every_status_and_move(status: PumpStatus, move: Move) -> None:
    allowed = {(s, m): t for s, m, t in CONTRACT_EDGES}
    if (status, move) in allowed:
        assert next_status(status, move) is allowed[(status, move)]
    else:
        with pytest.raises(MoveRefused) as err:
            next_status(status, move)
        assert err.value.current is status
        assert status.value in str(err.value)


def test_retired_is_terminal_and_only_retired() -> None:
    assert [s for s in S if is_terminal(s)] == [S.RETIRED]


@given(st.lists(st.sampled_from(list(M)), max_size=40))
def test_no_sequence_of_moves_leaves_the_contract(moves: list[Move]) -> None:
    status = INITIAL_STATUS
    history: list[tuple[PumpStatus, Move, PumpStatus]] = []
    for move in moves:
        try:
            after = next_status(status, move)
        except MoveRefused as err:
            assert move not in allowed_moves(status)
            assert err.current is status  # a refusal changes nothing
            continue
        history.append((status, move, after))
        status = after
    # every recorded move is a contract edge, and the history is a chain from in_stock
    assert all(edge in CONTRACT_EDGES for edge in history)
    assert all(a[2] is b[0] for a, b in zip(history, history[1:], strict=False))
    if history:
        assert history[0][0] is INITIAL_STATUS
    # a pump is implanted at most once, and explanted only after that implant
    implants = [i for i, e in enumerate(history) if e[1] is M.IMPLANT]
    explants = [i for i, e in enumerate(history) if e[1] is M.EXPLANT]
    assert len(implants) <= 1 and len(explants) <= 1
    assert all(implants and implants[0] < x for x in explants)
    # nothing follows retirement; after an implant the pump never returns to stock
    assert all(e[0] is not S.RETIRED for e in history)
    if implants:
        assert all(e[2] not in (S.IN_STOCK, S.QUARANTINED) for e in history[implants[0]:])


@pytest.mark.parametrize(("current", "move", "text"), [
    (S.RETIRED, M.RETIRE,
     "cannot retire a pump that is retired (retire needs explanted or in_stock or quarantined)"),
    (S.IMPLANTED, M.IMPLANT, "cannot implant a pump that is implanted (implant needs in_stock)"),
])
def test_a_refused_move_says_which_statuses_allow_it(current: PumpStatus, move: Move, text: str) -> None:
    with pytest.raises(MoveRefused) as err:
        next_status(current, move)
    assert (str(err.value), err.value.current, err.value.move) == (text, current, move)
