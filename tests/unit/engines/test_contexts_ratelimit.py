import random

from medforge.engines.ratelimit import SlidingWindowLimiter, estimate_tokens


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _check(grants, window, max_n, max_tok):
    grants = sorted(grants)
    for i, (t, _) in enumerate(grants):
        inside = [c for u, c in grants[i:] if u < t + window]
        assert len(inside) <= max_n and sum(inside) <= max_tok


def test_sliding_window_never_exceeds_limits():
    clock = Clock()
    lim = SlidingWindowLimiter(requests=5, tokens=1000, window_s=1.0, clock=clock)
    rng = random.Random(0)
    grants = []
    for _ in range(300):
        clock.t += rng.random() * 0.05
        cost = rng.randint(50, 400)
        grants.append((clock.t + lim.reserve(cost), cost))
    _check(grants, 1.0, 5, 1000)
    # and it is not idle: 300 requests at <= 5/s need about 60 s, not much more
    assert max(t for t, _ in grants) - 1000.0 < 300 * 400 / 1000 * 1.0 + 5


def test_burst_is_spread():
    clock = Clock()
    lim = SlidingWindowLimiter(requests=2, tokens=10**9, window_s=10.0, clock=clock)
    waits = [lim.reserve(1) for _ in range(5)]
    assert waits == [0.0, 0.0, 10.0, 10.0, 20.0]


def test_oversized_request_still_goes():
    clock = Clock()
    lim = SlidingWindowLimiter(requests=10, tokens=100, window_s=1.0, clock=clock)
    assert lim.reserve(5000) == 0.0
    assert lim.reserve(1) == 1.0


def test_estimate_tokens_is_generous():
    msgs = [{"role": "user", "content": "x" * 300}]
    assert estimate_tokens(msgs, 100, 3.0) >= 300 // 4 + 100
