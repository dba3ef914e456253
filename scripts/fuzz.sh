#!/usr/bin/env bash
# Runs pipewarden's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) one after
# another on nightly Rust, growing the corpora in fuzz/corpus/<target>/
# (seeded by fuzz/seeds.py; fuzz/regressions/<target>/ holds the inputs that
# once found a bug and is read too).
# Installs the nightly toolchain and cargo-fuzz when missing. A crash or a
# broken invariant stops that target's run: the input is written to
# fuzz/artifacts/<target>/ and the script exits non-zero at the end.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 60);
#                                           targets: all (see TARGETS below)
#   scripts/fuzz.sh cmin [TARGET...]        minimise the corpora in place, then
#                                           keep the smallest inputs within
#                                           FUZZ_CORPUS_KB (default 300) each
#   FUZZ_NICE=15                            nice level of the fuzzers
#
# Logs (with libFuzzer's final cov:/ft:/exec figures) go to
# fuzz/target/logs/<target>.log. The corpora are replayed on stable Rust by
# tests/fuzz_corpus.rs, so keep them small: run `cmin` before committing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

TARGETS=(wire envelope avro traceparent config json_scan tape)
# Same build flags for every command, so runs and cmin share one build:
# no sanitizer (the targets and their dependencies are safe Rust; this
# roughly doubles the executions per second), debug assertions on (integer
# overflow panics).
FLAGS=(--sanitizer none --debug-assertions)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

mode=run
if [ "${1:-}" = cmin ]; then
  mode=cmin
  shift
fi
seconds=60
if [ "$mode" = run ] && [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${TARGETS[@]}")
fi

mkdir -p target/logs
failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  if [ "$mode" = cmin ]; then
    echo "fuzz: minimising corpus/$target ($(find "corpus/$target" -type f | wc -l) files)"
    nice -n "${FUZZ_NICE:-15}" cargo +nightly fuzz cmin "${FLAGS[@]}" "$target" "corpus/$target"
    # Then keep the smallest inputs within FUZZ_CORPUS_KB (default 300) per
    # target: the corpora live in the repository and make test replays them.
    find "corpus/$target" -type f -printf '%s %p\n' | sort -n |
      awk -v budget=$((${FUZZ_CORPUS_KB:-300} * 1024)) '{ total += $1; if (total > budget) print $2 }' |
      xargs -r rm --
    echo "fuzz: corpus/$target now has $(find "corpus/$target" -type f | wc -l) files," \
      "$(find "corpus/$target" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }') bytes"
    continue
  fi
  echo "fuzz: running $target for ${seconds}s (log: fuzz/target/logs/$target.log)"
  # New inputs go to corpus/<target>; regressions/<target> (inputs that once
  # found a bug, never minimised away) is read as a second seed directory.
  extra=()
  if [ -d "regressions/$target" ]; then extra=("regressions/$target"); fi
  if ! nice -n "${FUZZ_NICE:-15}" cargo +nightly fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "${extra[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"target/logs/$target.log" 2>&1; then
    failed+=("$target")
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/"
  fi
  # The last status line: executions, coverage (cov), features (ft), corpus size.
  grep -E '^#[0-9]+' "target/logs/$target.log" | tail -1 || true
  grep -E 'stat::number_of_executed_units' "target/logs/$target.log" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in: ${failed[*]}" >&2
  exit 1
fi
