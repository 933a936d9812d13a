# Everything the project needs is installed from here (and pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORPORA ?= ../shared/corpora
DATA   ?= data

.PHONY: setup setup-milter milter serve test lint typecheck check proto default-model bench bench-peers clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: libmilter-dev to build pymilter, postfix for the end-to-end milter test.
SYSTEM_PACKAGES := libmilter-dev postfix
SYSTEM_STAMP := $(VENV)/.system
MILTER_STAMP := $(VENV)/.milter

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SYSTEM_STAMP): $(STAMP)
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
	  echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi
	touch $(SYSTEM_STAMP)

$(MILTER_STAMP): $(SYSTEM_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,milter]'
	touch $(MILTER_STAMP)

setup: $(STAMP)

## Everything for the milter (Debian's libmilter-dev and postfix, pymilter).
setup-milter: $(MILTER_STAMP)

## Run the verdict service on the bundled default model (Ctrl-C stops it).
serve: $(STAMP)
	$(BIN)/spamgate serve

## The whole test suite, plus lint and type checks (includes the real-Postfix milter test).
test: $(MILTER_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy spamgate bench tests
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy spamgate bench tests

## Run the milter for Postfix/Sendmail against a running `make serve`.
milter: $(MILTER_STAMP)
	$(BIN)/spamgate milter

## Regenerate the gRPC stubs from protos/ (a test fails when they are stale).
proto: $(STAMP)
	$(BIN)/python -m spamgate.service.api.proto_build

## Unpack the shared corpora (outside git) and retrain the bundled model.
$(DATA)/.unpacked:
	mkdir -p $(DATA)
	for f in $(CORPORA)/*.tar.xz; do tar -xJf $$f -C $(DATA); done
	touch $@

default-model: $(STAMP) $(DATA)/.unpacked
	$(BIN)/python -m spamgate.training.default_model --data $(DATA)

bench: $(STAMP) $(DATA)/.unpacked
	$(BIN)/python bench/accuracy.py --data $(DATA)
	$(BIN)/python bench/speed.py --data $(DATA) --repeat 5

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

## Score the peers' splits with bogofilter (S1, S2) and SpamAssassin (S1; ~10 min) from Debian's
## packages, with ../shared/peers' own scripts, for side-by-side ROC plots in bench/accuracy.py.
PEERS ?= ../shared/peers
bench-peers: $(DATA)/.unpacked
	command -v bogofilter >/dev/null && command -v spamc >/dev/null || ($(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bogofilter spamassassin spamc bc)
	mkdir -p bench/results/peers
	for s in S1 S2; do (cd $(DATA) && bash $(abspath $(PEERS))/run_bogofilter.sh \
	  $(abspath $(PEERS))/splits/$${s}_train.tsv $(abspath $(PEERS))/splits/$${s}_test.tsv \
	  $(abspath bench/results/peers)/bogofilter_$${s}.tsv); done
	cd $(DATA) && bash $(abspath $(PEERS))/run_spamassassin.sh $(abspath $(PEERS))/splits/S1_train.tsv \
	  $(abspath $(PEERS))/splits/S1_test.tsv $(abspath bench/results/peers)/spamassassin_S1.tsv
