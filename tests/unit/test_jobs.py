"""run_job's exit codes: 2 for a bad config, 3 when the breaker stopped the job or rows are still
pending, 0 otherwise. (The jobs' scripts all end in ``sys.exit(run_job(...))``; the breaker itself is
tested in tests/unit/engines/test_breaker.py and, inside real Ray Data streams, in
tests/integration/test_jobs_scripted.py.)"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from medforge.engines.breaker import EXIT_INCOMPLETE, BreakerConfig, FailureBreaker
from medforge.jobs import run_job, warn_if_tiny
from medforge.results import JobResult

TOO_LONG = "This model's maximum context length is 128 tokens. However, you requested 900 tokens in the messages"


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(2, ge=1, description="rows")


def _run(tmp_path, run, *overrides) -> int:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("rows: 2\n")
    return run_job(["--config", str(cfg), *overrides], prog="job.py", model=_Cfg, description="A job.",
                   example="rows=3", run=run, needs_ray=False)


class _Result(JobResult):
    rows: int


def _trip_on_every_prompt(cfg: _Cfg) -> _Result:
    breaker = FailureBreaker(BreakerConfig(max_consecutive_fatal=cfg.rows))
    for _ in range(cfg.rows):
        breaker.record(TOO_LONG)
    return _Result(output_dir="out", rows=cfg.rows)


def test_a_breaker_trip_exits_3_naming_the_cause_and_the_fix(tmp_path, capsys):
    assert _run(tmp_path, _trip_on_every_prompt) == EXIT_INCOMPLETE == 3
    err = capsys.readouterr().err
    assert "medforge circuit breaker:" in err and "context length" in err and "engine.max_model_len" in err


def test_a_trip_wrapped_by_another_exception_still_exits_3(tmp_path, capsys):
    def run(cfg):
        try:
            _trip_on_every_prompt(cfg)
        except Exception as exc:  # as a Ray actor's error wraps it
            raise RuntimeError("task failed") from exc

    assert _run(tmp_path, run) == 3 and "context length" in capsys.readouterr().err


def test_pending_rows_exit_3_and_a_clean_run_0(tmp_path, capsys):
    assert _run(tmp_path, lambda cfg: _Result(output_dir="out", rows=cfg.rows, incomplete="1 chunk pending")) == 3
    assert "incomplete: 1 chunk pending" in capsys.readouterr().err
    assert _run(tmp_path, lambda cfg: _Result(output_dir="out", rows=cfg.rows)) == 0
    out = capsys.readouterr().out
    assert '"rows": 2' in out and '"output_dir": "out"' in out and "incomplete" not in out


def test_a_bad_config_exits_2_before_running(tmp_path, capsys):
    ran = []
    assert _run(tmp_path, ran.append, "rows=0") == 2
    assert ran == [] and "rows" in capsys.readouterr().err


def test_any_other_error_is_raised(tmp_path):
    def run(cfg):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        _run(tmp_path, run)


def test_the_noise_warning_names_tiny_models_only(caplog):
    with caplog.at_level("WARNING", logger="medforge.jobs"):
        warn_if_tiny("/models/.tiny_models/tiny-llama", "noise!")
        warn_if_tiny("/models/smollm2-135m-instruct", "not this one")
    assert [r.getMessage() for r in caplog.records] == ["noise!"]
