"""``medforge serve --config configs/serve/<setting>.yaml``: start the apps of a Ray Serve config file.

The file is the one ``serve run`` / ``serve deploy`` read; this command validates every
application's ``args`` first (all problems at once), joins or starts Ray with enough
logical CPUs, starts Serve with Ray's throughput mode on unless the user turned it off
(:func:`controller_options`), then runs the apps and blocks until interrupted. Overrides address
one application's args: ``llm.engine.model=/models/my-export``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from medforge.config.base import ConfigError, _deep_merge, format_validation_error, parse_overrides
from medforge.config.registry import resolve_config_path
from medforge.runtime import init_ray

logger = logging.getLogger(__name__)

# Ray Serve's throughput mode (ray/serve/_private/constants.py): gRPC between replicas, direct
# ingress, user code and router on the replica's main loop, buffered request logs, GC frozen
# after start. Every Serve process reads it when it imports ray.serve, so it must be in the
# environment of the controller, the proxies and the replicas; a per-application runtime_env
# reaches the replicas only. medforge turns it on unless the user said otherwise.
THROUGHPUT_SWITCH = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
# How long Serve (throughput mode) holds an ingress replica open on shutdown so that an external load
# balancer can deregister it (Ray's default: 30 s; serve.shutdown() waits it out).
INGRESS_DRAIN = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"

# import_path of a medforge app builder -> "module:ArgsModel" that validates its args
BUILDERS: dict[str, str] = {
    "medforge.serve.llm:app_builder": "medforge.serve.config:LLMServeConfig",
    "medforge.serve.qa:app_builder": "medforge.serve.qa:QAServeConfig",
}


def load_serve_file(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a Serve config file, apply ``<app>.<key>=value`` overrides, validate each app's args.

    Raises:
        ConfigError: every problem of every application.
    """
    import importlib

    from pydantic import ValidationError

    p = resolve_config_path(path)
    if not p.is_file():
        raise ConfigError(str(p), [f"serve config {p} does not exist; pick one under configs/serve/"])
    data = yaml.safe_load(p.read_text()) or {}
    apps = data.get("applications") or []
    problems: list[str] = []
    if not apps:
        problems.append("no `applications:` list; see configs/serve/local_tiny.yaml")
    by_name = {a.get("name"): a for a in apps}
    for name, value in parse_overrides(overrides).items():
        if name not in by_name:
            problems.append(f"override {name}...: no application named {name!r}; one of {sorted(by_name)}")
            continue
        if not isinstance(value, dict):
            problems.append(f"override {name}={value!r}: give a key inside the app's args, e.g. {name}.model_id=x")
            continue
        by_name[name]["args"] = _deep_merge(by_name[name].get("args") or {}, value, kind_replaces=True)
    if data.get("controller_options") is not None:
        from ray.serve.config import ControllerOptions

        try:
            ControllerOptions.model_validate(data["controller_options"])
        except ValidationError as exc:
            problems += [f"controller_options: {e['msg']} (at {'.'.join(map(str, e['loc'])) or 'top'}); Ray Serve "
                         "accepts only runtime_env.env_vars there" for e in exc.errors()]
    for app in apps:
        target = BUILDERS.get(app.get("import_path", ""))
        if target is None:
            problems.append(f"applications[{app.get('name')}].import_path = {app.get('import_path')!r}: "
                            f"not a medforge app; use one of {sorted(BUILDERS)}")
            continue
        module, cls = target.split(":")
        model = getattr(importlib.import_module(module), cls)
        try:
            model.model_validate(app.get("args") or {})
        except ValidationError as exc:
            problems += [f"{app.get('name')}.{line}" for line in format_validation_error(exc, model)]
    if problems:
        raise ConfigError(str(p), problems)
    return data


def controller_options(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Serve controller's options for ``serve.start``: the file's ``controller_options``, with
    ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` in its ``runtime_env.env_vars``.

    Precedence: the file's own value (``controller_options.runtime_env.env_vars``, what ``serve
    run``/``serve deploy`` would apply), else the value in the environment of this process
    (``RAY_SERVE_THROUGHPUT_OPTIMIZED=0 medforge serve ...`` turns it off), else ``"1"``. The
    controller's environment is inherited by the proxies and replicas it starts.
    """
    environ = os.environ if environ is None else environ
    opts = copy.deepcopy(data.get("controller_options") or {})
    runtime_env = opts.get("runtime_env") or {}
    env_vars = dict(runtime_env.get("env_vars") or {})
    if THROUGHPUT_SWITCH not in env_vars:
        env_vars[THROUGHPUT_SWITCH] = environ.get(THROUGHPUT_SWITCH, "1")
    opts["runtime_env"] = {**runtime_env, "env_vars": env_vars}
    return opts


def without_ingress_drain(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Serve config whose controller -- and so every proxy and replica it starts -- skips
    Ray's direct-ingress drain period (``INGRESS_DRAIN`` = 0), for an endpoint that nothing
    load-balances and that its owner shuts down itself: without it, ``serve.shutdown()`` waits out
    Ray's 30 s. Requests in flight are still drained. The config's other controller options and
    environment variables are kept; ``data`` is not changed.
    """
    opts = data.get("controller_options") or {}
    runtime_env = opts.get("runtime_env") or {}
    env_vars = {**(runtime_env.get("env_vars") or {}), INGRESS_DRAIN: "0"}
    return {**data, "controller_options": {**opts, "runtime_env": {**runtime_env, "env_vars": env_vars}}}


def run_serve(data: dict[str, Any], address: str | None, num_cpus: int | None, blocking: bool = True) -> None:
    """Start Ray (or join ``address``), start Serve with the file's HTTP and controller options
    (throughput mode on by default, see :func:`controller_options`) and run its apps.

    The controller options apply when this call starts Serve's controller; a Serve instance
    already running on the cluster keeps its own (Ray logs that it ignored them).
    """
    import importlib

    from ray import serve

    # ray.serve.llm needs logical CPUs for the ingress, the LLMServer actor and the engine's
    # bundle; on a 2-core laptop exact accounting never schedules the ingress (STACK.md).
    init_ray(address, num_cpus or 8)
    http = data.get("http_options") or {}
    ctl = controller_options(data)
    logger.info("Serve controller env: %s=%s", THROUGHPUT_SWITCH, ctl["runtime_env"]["env_vars"][THROUGHPUT_SWITCH])
    serve.start(http_options={k: v for k, v in http.items() if k in ("host", "port", "request_timeout_s")},
                proxy_location=data.get("proxy_location", "HeadOnly"), controller_options=ctl)
    for app in data["applications"]:
        module, fn = app["import_path"].split(":")
        built = getattr(importlib.import_module(module), fn)(app.get("args") or {})
        serve.run(built, name=app["name"], route_prefix=app.get("route_prefix", "/"), blocking=False)
        logger.info("application %s is up at %s", app["name"], app.get("route_prefix", "/"))
    if blocking:
        serve_until_interrupted()


def serve_until_interrupted() -> None:
    """Keep this driver (and a local cluster it started) alive until Ctrl-C, then shut Serve down."""
    from ray import serve

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="medforge serve",
        description="Serve the trained models (OpenAI-compatible LLM endpoint, multi-LoRA). "
                    "Extra arguments are `<app>.<key>=value` overrides, e.g. llm.engine.model=/models/export.")
    parser.add_argument("--config", required=True, help="Ray Serve config file under configs/serve/")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    parser.add_argument("--num-cpus", type=int, default=None, help="Logical CPUs of a local cluster (default 8)")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; only --config/--address/--num-cpus and key=value overrides")
    try:
        data = load_serve_file(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_serve(data, args.address, args.num_cpus)
    return 0
