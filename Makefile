# The set-up commands of the README. They share one virtual environment, .venv: `make demo` (or
# `make install`) installs imitate into it, `make test` (or `make install-dev`) adds the test extras.
# Later commands need it active: . .venv/bin/activate
# torch==2.13.0 is installed first so that nothing pulls a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# pip's own lines (one per package collected, a bar per download) show what is being installed
PIP_INSTALL := $(PIP) install --progress-bar on

.PHONY: demo test install install-dev clean

$(VENV)/.installed: setup.cfg pyproject.toml
	@echo "== install 1/4: a virtual environment in $(VENV) (shared by make demo and make test)"
	$(PYTHON) -m venv $(VENV)
	@echo "== install 2/4: an up-to-date pip"
	$(PIP_INSTALL) --upgrade pip
	@echo "== install 3/4: torch 2.13.0 (the largest download)"
	$(PIP_INSTALL) torch==2.13.0
	@echo "== install 4/4: imitate (editable) and its dependencies: diffusers, gymnasium with MuJoCo, h5py, matplotlib, ..."
	$(PIP_INSTALL) -e ".[mujoco]"
	touch $@
	@echo "== installed. To use the imitate command in this shell: . $(VENV)/bin/activate"

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "== install (tests) 1/2: the test extras: pytest, onnx, onnxruntime, pygame, notebook runner"
	$(PIP_INSTALL) -e ".[mujoco,dev]"
	@echo "== install (tests) 2/2: robomimic 0.3.0, the reference reader of the file format (without its torchvision)"
	$(PIP_INSTALL) --no-deps robomimic==0.3.0
	$(PIP_INSTALL) termcolor
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/imitate demo

test: $(VENV)/.installed-dev
	MUJOCO_GL=egl $(PY) -m pytest -q -n auto

clean:
	rm -rf $(VENV) runs
