# opsflow — `make run` starts the whole local stack, `make test` runs every
# test against real PostgreSQL and a real Temporal dev server.

GO          ?= go
BIN         := $(CURDIR)/bin
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL    := $(BIN)/temporal
# A stamp per version, so changing the pin reinstalls the CLI.
TEMPORAL_STAMP := $(BIN)/.temporal-$(TEMPORAL_CLI_VERSION)
TEST_TIMEOUT ?= 20m

.PHONY: run test bench build vet fuzz clean

build: $(BIN)/opsflow

$(TEMPORAL_STAMP):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
	@touch $@

$(TEMPORAL): $(TEMPORAL_STAMP)

# Always rebuilt: go's build cache makes this cheap when nothing changed.
$(BIN)/opsflow: FORCE
	@mkdir -p $(BIN)
	$(GO) build -o $@ ./cmd/opsflow

FORCE:

run: $(TEMPORAL_STAMP) $(BIN)/opsflow
	$(BIN)/opsflow dev --temporal-cli $(TEMPORAL)

# workflowcheck: workflow code must be deterministic (no map-order, time,
# I/O or goroutines); `//workflowcheck:ignore <why>` marks the safe cases.
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

vet:
	$(GO) vet ./...
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

test: $(TEMPORAL_STAMP) vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Short fuzzing runs of the input decoders and the SSRF URL check; `go test`
# alone replays the seeds.
fuzz:
	$(GO) test ./api/ -run '^$$' -fuzz FuzzDecodeBatch -fuzztime 30s
	$(GO) test ./notify/ -run '^$$' -fuzz FuzzValidateURL -fuzztime 30s

# Go benchmarks against the same real services as the tests.
bench: $(TEMPORAL_STAMP)
	$(GO) test ./... -run '^$$' -bench . -benchtime 1x -timeout 60m

clean:
	rm -rf $(BIN)
