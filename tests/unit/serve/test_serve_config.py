"""The serving YAMLs and their validation (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medforge.config.base import ConfigError
from medforge.serve.cli import load_serve_file

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "serve").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_serving_files_validate_and_carry_the_commands(path, tiny_models, tmp_path):
    """Every serving file validates once its model folders exist (tiny stand-ins here)."""
    import yaml

    text = path.read_text()
    assert "serve run configs/serve/" in text or "serve deploy configs/serve/" in text
    assert "ray job submit" in text and "ray_jobs/serve.py" in text and "medforge serve --config configs/serve/" in text
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(text)
    ServeDeploySchema.model_validate(data)  # what `serve run` / `serve deploy` read
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    for app in data["applications"]:
        args = app["args"]
        if "engine" in args and not Path(args["engine"]["model"]).is_dir():
            args["engine"]["model"] = str(tiny_models["llama"])
        args["adapters"] = {k: str(adapter) for k in args.get("adapters", {})} if "adapters" in args else None
        if args["adapters"] is None:
            del args["adapters"]
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(data))
    assert load_serve_file(copy)["applications"]


def test_every_problem_is_reported_at_once(tmp_path, tiny_models):
    f = tmp_path / "s.yaml"
    f.write_text(
        "applications:\n"
        "  - name: llm\n"
        "    import_path: medforge.serve.llm:app_builder\n"
        "    args:\n"
        f"      model_id: 'bad:id'\n"
        f"      engine: {{model: {tiny_models['llama']}}}\n"
        "      adapters: {'a/b': /nonexistent}\n"
        "      autoscaling: {min_replicas: 3, max_replicas: 2}\n"
        "      typo: 1\n"
        "  - name: other\n"
        "    import_path: somewhere:else\n")
    with pytest.raises(ConfigError) as exc:
        load_serve_file(f, ["llm.max_lora_rank=0", "nope.x=1"])
    text = str(exc.value)
    for needle in ("llm.model_id", "llm.adapters", "no adapter_config.json", "max_replicas=2 < min_replicas=3",
                   "llm.typo", "unknown key", "llm.max_lora_rank", "somewhere:else", "no application named 'nope'"):
        assert needle in text, needle


def test_overload_bound_sits_at_the_front_door_with_retry_after():
    """The HTTP-facing deployment carries the queue bound and the 503 + Retry-After response; a
    bound on a deployment behind a handle would come out as a 500 (BackPressureError in the app)."""
    from medforge.serve.config import ServedAppConfig

    cfg = ServedAppConfig.model_validate({"max_ongoing_requests": 4, "max_queued_requests": 3, "retry_after_s": 2.5,
                                          "autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    own = cfg.front_door_options()
    assert own["max_ongoing_requests"] == 4 and own["max_queued_requests"] == 3
    assert own["backpressure_config"].status_code == 503 and own["backpressure_config"].retry_after_s == 2.5
    # an ingress in front of 3 engine replicas admits what the 3 of them take at once
    assert cfg.front_door_options(replicas_behind=3)["max_ongoing_requests"] == 12


def test_throughput_mode_is_on_by_default_in_the_serve_controller_env():
    from medforge.serve.cli import THROUGHPUT_SWITCH, controller_options

    opts = controller_options({"applications": []}, environ={})
    assert opts == {"runtime_env": {"env_vars": {THROUGHPUT_SWITCH: "1"}}}
    # other controller env vars of the file are kept, and the file is not modified
    data = {"controller_options": {"runtime_env": {"env_vars": {"RAY_SERVE_X": "7"}}}}
    assert controller_options(data, environ={})["runtime_env"]["env_vars"] == {"RAY_SERVE_X": "7", THROUGHPUT_SWITCH: "1"}
    assert data == {"controller_options": {"runtime_env": {"env_vars": {"RAY_SERVE_X": "7"}}}}


def test_without_ingress_drain_turns_the_drain_off_and_keeps_the_rest():
    from medforge.serve.cli import INGRESS_DRAIN, THROUGHPUT_SWITCH, controller_options, without_ingress_drain

    data = {"applications": [], "controller_options": {"max_ongoing": 3, "runtime_env": {"env_vars": {"RAY_SERVE_X": "7"}}}}
    off = without_ingress_drain(data)
    assert off["controller_options"] == {"max_ongoing": 3, "runtime_env": {"env_vars": {"RAY_SERVE_X": "7", INGRESS_DRAIN: "0"}}}
    assert data["controller_options"]["runtime_env"]["env_vars"] == {"RAY_SERVE_X": "7"}  # the input is not modified
    assert without_ingress_drain({"applications": []})["controller_options"] == {"runtime_env": {"env_vars": {INGRESS_DRAIN: "0"}}}
    # what serve.start gets: the drain off beside throughput mode
    assert controller_options(off, environ={})["runtime_env"]["env_vars"][INGRESS_DRAIN] == "0"
    assert controller_options(off, environ={})["runtime_env"]["env_vars"][THROUGHPUT_SWITCH] == "1"


def test_throughput_mode_off_when_the_user_says_so():
    from medforge.serve.cli import THROUGHPUT_SWITCH, controller_options

    # in the environment of the process that starts Serve
    assert controller_options({}, environ={THROUGHPUT_SWITCH: "0"})["runtime_env"]["env_vars"][THROUGHPUT_SWITCH] == "0"
    # in the serve file (what `serve run`/`serve deploy` apply too): the file wins over the environment
    data = {"controller_options": {"runtime_env": {"env_vars": {THROUGHPUT_SWITCH: "0"}}}}
    assert controller_options(data, environ={THROUGHPUT_SWITCH: "1"})["runtime_env"]["env_vars"][THROUGHPUT_SWITCH] == "0"


def test_controller_options_of_a_serve_file_are_validated(tmp_path, tiny_models):
    f = tmp_path / "s.yaml"
    f.write_text(
        "controller_options:\n"
        "  runtime_env: {pip: [requests]}\n"
        "applications:\n"
        "  - name: llm\n"
        "    import_path: medforge.serve.llm:app_builder\n"
        f"    args: {{model_id: m, engine: {{model: {tiny_models['llama']}}}}}\n")
    with pytest.raises(ConfigError, match="controller_options.*env_vars"):
        load_serve_file(f)


def test_the_cluster_serve_file_turns_throughput_mode_on_for_serve_deploy_too():
    """`serve deploy configs/serve/cluster.yaml` runs no medforge code before the controller starts: the
    file itself carries the switch, and medforge serve keeps the file's value."""
    import yaml

    from medforge.serve.cli import THROUGHPUT_SWITCH, controller_options

    data = yaml.safe_load((REPO / "configs" / "serve" / "cluster.yaml").read_text())
    assert data["controller_options"]["runtime_env"]["env_vars"][THROUGHPUT_SWITCH] == "1"
    assert controller_options(data, environ={})["runtime_env"]["env_vars"][THROUGHPUT_SWITCH] == "1"
