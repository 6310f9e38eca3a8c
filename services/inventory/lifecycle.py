"""A pump's lifecycle as CONTRACT.md draws it; every other move is refused.

`in_stock` →implant→ `implanted` →explant→ `explanted`; `in_stock` ↔ `quarantined`
(quarantine / release); `in_stock | quarantined | explanted` →retire→ `retired`.
"""

from __future__ import annotations

from enum import StrEnum

from shared.contracts.vocabulary import PumpStatus

__all__ = ["INITIAL_STATUS", "TRANSITIONS", "Move", "MoveRefused", "PumpStatus", "allowed_moves",
           "is_terminal", "next_status"]


class Move(StrEnum):
    IMPLANT = "implant"
    EXPLANT = "explant"
    QUARANTINE = "quarantine"
    RELEASE = "release"
    RETIRE = "retire"


INITIAL_STATUS = PumpStatus.IN_STOCK

TRANSITIONS: dict[tuple[PumpStatus, Move], PumpStatus] = {
    (PumpStatus.IN_STOCK, Move.IMPLANT): PumpStatus.IMPLANTED,
    (PumpStatus.IMPLANTED, Move.EXPLANT): PumpStatus.EXPLANTED,
    (PumpStatus.IN_STOCK, Move.QUARANTINE): PumpStatus.QUARANTINED,
    (PumpStatus.QUARANTINED, Move.RELEASE): PumpStatus.IN_STOCK,
    (PumpStatus.IN_STOCK, Move.RETIRE): PumpStatus.RETIRED,
    (PumpStatus.QUARANTINED, Move.RETIRE): PumpStatus.RETIRED,
    (PumpStatus.EXPLANTED, Move.RETIRE): PumpStatus.RETIRED,
}


class MoveRefused(Exception):
    """The move is not allowed from the pump's current status."""

    def __init__(self, current: PumpStatus, move: Move) -> None:
        allowed = sorted(s.value for (s, m) in TRANSITIONS if m is move)
        super().__init__(
            f"cannot {move.value} a pump that is {current.value} "
            f"({move.value} needs {' or '.join(allowed)})"
        )
        self.current = current
        self.move = move


def next_status(current: PumpStatus | str, move: Move | str) -> PumpStatus:
    """The status after `move`, or MoveRefused when the contract does not allow it."""
    current, move = PumpStatus(current), Move(move)
    try:
        return TRANSITIONS[(current, move)]
    except KeyError:
        raise MoveRefused(current, move) from None


def allowed_moves(current: PumpStatus | str) -> list[Move]:
    """The moves the contract allows from this status."""
    current = PumpStatus(current)
    return [m for (s, m) in TRANSITIONS if s is current]


def is_terminal(status: PumpStatus | str) -> bool:
    """True for a status no move leaves (`retired`)."""
    return not allowed_moves(status)
