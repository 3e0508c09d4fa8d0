"""A clock the test moves by hand (`clock.now += 61`), for code that takes a `clock` callable."""


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
