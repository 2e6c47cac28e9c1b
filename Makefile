# The two set-up commands of the README. Each makes its own virtual environment in .venv.
# torch==2.13.0 is installed first so that nothing pulls a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test install install-dev clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[mujoco]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[mujoco,dev]"
	# robomimic is the reference reader of the file format; the rest of it needs torchvision.
	$(PIP) install -q --no-deps robomimic==0.3.0
	$(PIP) install -q termcolor
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/imitate demo

test: $(VENV)/.installed-dev
	MUJOCO_GL=egl $(PY) -m pytest -q -n auto

clean:
	rm -rf $(VENV) runs
