# The two commands of the README. Each does its own set-up (creates .venv/ on first use).
.PHONY: setup demo test test-unit test-integration rehearse bench clean

setup:
	bash scripts/bootstrap.sh

demo: setup
	.venv/bin/medforge demo

test: setup
	.venv/bin/python -m pytest tests -q -p no:cacheprovider --timeout=1800 --durations=15

test-unit: setup
	.venv/bin/python -m pytest tests/unit -q -p no:cacheprovider

test-integration: setup
	.venv/bin/python -m pytest tests/integration -q -p no:cacheprovider --timeout=1800 --durations=15

clean:
	rm -rf runs .tiny_models .small_models

# The cluster path as a user runs it: head + 2 worker nodes (each its own `ray start`), the documented
# commands of docs/cluster.md through the job server (docs/cluster.md, "Rehearsal"). ~10 min on 2 cores.
rehearse: setup
	.venv/bin/python -m pytest tests/integration/test_rehearsal.py -q -s -p no:cacheprovider --timeout=2400
