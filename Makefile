# The two commands of the README. Each does its own set-up (creates .venv/ on first use).
.PHONY: setup demo test test-unit test-integration bench clean

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
