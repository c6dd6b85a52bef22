"""Failure classification, the circuit breaker and Retry-After (issue 13)."""

import pytest

from medforge.engines.breaker import BreakerConfig, CircuitOpen, FailureBreaker, circuit_message, classify


@pytest.mark.parametrize("error, key, pending", [
    ("openai teacher failed after retries: AuthenticationError: Error code: 401 - invalid api key", "401 unauthorized", True),
    ("openai teacher failed after retries: BadRequestError: Error code: 400 - bad", "400 bad request", False),
    ("This model's maximum context length is 2048 tokens", "prompt over the context length", False),
    ("openai teacher failed after retries: APIConnectionError: Connection error.", "endpoint unavailable", True),
    ("openai teacher failed after retries: InternalServerError: Error code: 500", "5xx server error", True),
    ("openai teacher failed after retries: RateLimitError: Error code: 429", "429 rate limited", True),
    ("ActorDiedError: the actor died unexpectedly", "engine died", True),
])
def test_classify(error, key, pending):
    kind = classify(error)
    assert kind.key == key and kind.pending is pending and kind.fix


def test_breaker_trips_on_repeated_fatal_error_and_names_it():
    b = FailureBreaker(BreakerConfig(max_consecutive_fatal=3, max_consecutive_failures=100))
    err = "AuthenticationError: Error code: 401"
    b.record(err)
    b.record(err)
    with pytest.raises(CircuitOpen) as info:
        b.record(err)
    msg = str(info.value)
    assert "401" in msg and "3 requests in a row" in msg and "api_key_env" in msg
    assert circuit_message(RuntimeError("wrapped")) is None
    wrapped = RuntimeError("ray task failed")
    wrapped.__cause__ = info.value
    assert circuit_message(wrapped).startswith("medforge circuit breaker:")


def test_breaker_resets_on_success_and_counts_any_failures():
    b = FailureBreaker(BreakerConfig(max_consecutive_fatal=2, max_consecutive_failures=4))
    for _ in range(10):  # failures broken by successes never trip
        b.record("Connection refused")
        b.record("Connection refused")
        b.record("")
    b.record("AuthenticationError 401")
    b.record("BadRequestError 400")  # a different fatal error restarts the fatal run
    with pytest.raises(CircuitOpen, match="4 requests in a row failed"):
        b.record("Connection refused")
        b.record("Connection refused")


def test_retry_after_header_parsed():
    from types import SimpleNamespace

    from medforge.engines.openai_client import retry_after_s

    def exc(headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(exc({"retry-after": "3"})) == 3.0
    assert retry_after_s(exc({"retry-after-ms": "1500"})) == 1.5
    assert retry_after_s(exc({})) is None
    assert retry_after_s(exc({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after_s(ValueError("no response")) is None
