# pipewarden: the two commands are `make demo` and `make test`.
.PHONY: demo test bench bench-lag build deps kafka-start kafka-stop stop check-config fuzz

# Local Kafka + pipewarden (config.toml) + simulated agent pipelines.
demo:
	bash scripts/demo.sh

# Every test (unit and integration), against the local Kafka broker.
test:
	bash scripts/test.sh

# Every figure of docs/performance.md: ingest throughput against a raw
# consumer (with the processing p99), CPU per stage, memory per open trace,
# /metrics render time, lag cycle; results in target/bench/.
bench:
	bash scripts/bench.sh

# One lag cycle over 1,000 groups and 2,000 partitions created for the run
# (then deleted); results in target/bench/lag.json.
bench-lag:
	bash scripts/bench.sh lag

# The fuzz targets (nightly Rust, cargo-fuzz), one after another,
# FUZZ_SECONDS each (default 60); see scripts/fuzz.sh and docs/reliability.md.
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

build: deps
	cargo build --release --locked

deps:
	bash scripts/deps.sh

check-config: build
	target/release/pipewarden check-config --config config.toml

kafka-start:
	bash scripts/kafka.sh start

kafka-stop:
	bash scripts/kafka.sh stop

# Stops what `make demo` started (pipewarden, simulator, Kafka).
stop:
	bash scripts/demo.sh stop
