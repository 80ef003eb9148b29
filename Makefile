# georoute — build, demo and tests. A newcomer needs two targets:
#   make run    build bin/coredns and serve the demo zone on 127.0.0.1:1053
#   make test   every test: unit, fuzz corpora, and black-box tests with dig
GO       ?= go
BIN      := bin/coredns
GOFILES  := $(shell find . -name '*.go' -not -path './.realdb/*') go.mod go.sum

.PHONY: build run test unit integration testdb fuzz vet clean

build: $(BIN)

$(BIN): $(GOFILES)
	$(GO) build -o $(BIN) ./cmd/coredns

run: $(BIN)
	$(BIN) -conf testdata/Corefile

# The integration tests start $(BIN) and query it with dig; they build it first.
test: $(BIN)
	$(GO) vet ./...
	$(GO) test -count=1 -race ./...
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x ./...

testdb:
	$(GO) run ./internal/mmdbgen -in testdata/geo.csv -out testdata/geo.mmdb -layout city -ip 6
	$(GO) run ./internal/mmdbgen -in testdata/geo.csv -out testdata/geo-flat-v4.mmdb -layout flat -ip 4

# Fuzz each target for FUZZTIME (the seed corpora also run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseClientSubnet -fuzztime=$(FUZZTIME) .

clean:
	rm -rf bin
