# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DEMO_ITEMS ?= 12
DEMO_CYCLES ?= 8

.PHONY: run test e2e install lint bench bench-quick soak clean rpm

# running needs the package alone; tests add the [test] extra (htcondor, pytest, ...)
$(BIN)/.installed-run: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed: $(BIN)/.installed-run
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

## make run: install into .venv and run the factory on the embedded default (writes only ./var/)
run: $(BIN)/.installed-run
	@mkdir -p var/spool/DEMO
	@[ -f var/admin.token ] || (umask 077; $(PYTHON) -c 'import secrets; print(secrets.token_hex(16))' > var/admin.token)
	@for i in $$(seq 1 $(DEMO_ITEMS)); do \
	  echo '{"command": ["sleep", "2"]}' > var/spool/DEMO/demo-$$i.json; done
	@echo '{"command": ["false"]}' > var/spool/DEMO/demo-failing.json
	@echo "seeded $$(ls var/spool/DEMO/*.json | wc -l) work items in var/spool/DEMO; running $(DEMO_CYCLES) cycles"
	@echo "while it runs: the status page is at the URL of the 'web: serving' line below; '$(BIN)/apf status --conf etc/demo/factory.conf'"
	$(BIN)/autopyfactory --conf etc/demo/factory.conf --foreground --cycles $(DEMO_CYCLES) --log stdout
	@echo "work items left: $$(ls var/spool/DEMO/*.json 2>/dev/null | wc -l), done: $$(ls var/spool/DEMO/done | wc -l); pilot logs under var/logs/"

## make test: install test dependencies, start the services the tests need, run pytest
test: install
	@for script in tests/services/*.sh; do [ -f "$$script" ] && bash "$$script"; done; true
	$(BIN)/ruff check autopyfactory tests bench
	$(BIN)/pytest -q

## make e2e: only the end-to-end loop (PanDA job -> factory -> Slurm pilot -> real PanDA pilot -> job finished)
## on a real PanDA server and the real Slurm cluster; needs APF_PANDA_SCHEMA (docs/wms.md). Also part of make test.
e2e: install
	@bash tests/services/slurm.sh
	@bash tests/services/panda.sh
	$(BIN)/pytest -q -rs tests/test_e2e_panda.py

## make bench: the benchmarks (bench/) against real Slurm, a PanDA double and a stand-in squeue;
## prints the table and writes it into docs/performance.md. Not part of make test.
bench: install
	@bash tests/services/slurm.sh
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.provisioning --quick

## make bench-quick: the scale benchmark at 500 queues, a few intervals (under 2 minutes); prints each ratio
## against its target and exits non-zero when one is missed. Run it before changing the cycle, the store or status.
bench-quick: install
	$(BIN)/python -m bench.run --quick

## make soak: one factory with 1,000 queues for SOAK_MINUTES (default 60) under reloads, admin calls, a failing
## PanDA and faulting/hanging pilots; fails on any invariant violation or RSS/thread/fd growth.
## SOAK_SLURM=1: on the real Slurm test cluster, SOAK_QUEUES (500) queues, kill -9 of the daemon every
## SOAK_KILL_EVERY minutes (20) and a restart; also fails on a pilot lost or doubled against Slurm's own account.
## Writes docs/soak.json and docs/soak.png (docs/soak-slurm.*). Not part of make test.
soak: install
	$(if $(SOAK_SLURM),@bash tests/services/slurm.sh)
	$(BIN)/python -m bench.soak --minutes $${SOAK_MINUTES:-60}

## make rpm: build the noarch RPM into build/rpm/RPMS/noarch/ (needs rpmbuild: tests/services/rpm.sh)
rpm: install
	APF_RPM_PYTHON=$(abspath $(BIN)/python) rpm/build-rpm.sh

lint: install
	$(BIN)/ruff check autopyfactory tests bench

clean:
	rm -rf var build dist *.egg-info .pytest_cache
