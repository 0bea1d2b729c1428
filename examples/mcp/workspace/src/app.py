"""Harbor tours: the booking service."""

PRICE_PER_SEAT = 35


def total(seats: int) -> int:
    return seats * PRICE_PER_SEAT
