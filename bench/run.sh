#!/usr/bin/env bash
# The benchmark suite (issue 13): every table in BENCHMARKS.md, reproduced.
#
#   bench/run.sh            full run (release build, several repetitions, peers
#                           side by side); rewrites the generated sections of
#                           BENCHMARKS.md in place and keeps the raw output in
#                           target/bench/
#   bench/run.sh --quick    smoke run (dev profile, small sizes, one repetition,
#                           a few minutes): proves every harness and peer still
#                           runs; prints the sections, leaves BENCHMARKS.md alone
#   bench/run.sh [--quick] PART...   only these parts
#
# Each part is a harness `bench/<part>.rs` (`[[bench]]` in Cargo.toml, no
# libtest harness) that takes `--quick` and `--markdown FILE` and writes its
# section of BENCHMARKS.md to FILE: the command that reproduces it, the
# machine, the peers' versions, and medians with the peer beside each figure.
# Criterion benches (`benches/`) are summarised from criterion's own estimates.
# No part asserts a timing: a part fails only when something did not work
# (a peer did not start, an account did not converge).
#
# Peers come from Debian packages and are installed when missing: kamailio
# (SIP dispatcher pings), prometheus-blackbox-exporter (HTTP probes), sipp
# (package sip-tester: the SIP trunk), wrk (HTTP load).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
parts=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick="--quick" ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "bench/run.sh: unknown option $arg" >&2; exit 2 ;;
    *) parts+=("$arg") ;;
  esac
done
# Harness parts in the order BENCHMARKS.md shows them, then the criterion benches.
all_parts=(sip http ingest latency detection footprint accounts)
criterion_benches=(engine sip_codec webhook_parse)
[ ${#parts[@]} -gt 0 ] || parts=("${all_parts[@]}" "${criterion_benches[@]}")

install_peers() {
  local need=()
  command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
  command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
  command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  [ ${#need[@]} -gt 0 ] || return 0
  echo "bench/run.sh: installing ${need[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# The quick run reuses what the test suite already built: the dev profile,
# and the features the tests resolve (dev-dependencies unify features, so
# building the binary alongside the benches gives the test suite's binary;
# `cargo build --bin` alone would rebuild every dependency without them).
# The full run measures what ships: the release binary as a user builds it.
install_peers
if [ -n "$quick" ]; then
  profile=dev; bindir=debug
  cargo build --locked --profile dev --bin continuity-agent --benches
else
  profile=release; bindir=release
  cargo build --locked --profile release --bin continuity-agent
fi
export CONTINUITY_AGENT_BIN="$PWD/target/$bindir/continuity-agent"

out="target/bench/$(date -u +%Y%m%dT%H%M%SZ)${quick:+-quick}"
mkdir -p "$out"
echo "bench/run.sh: sections and logs in $out" >&2

is_harness() { local p; for p in "${all_parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

failed=()
for part in "${parts[@]}"; do
  echo "== $part" >&2
  # The full SIP run ends with the 10-minute soak at its largest N (issue 13:
  # no memory growth over ten minutes at 10,000 trunks).
  extra=()
  [ -z "$quick" ] && [ "$part" = sip ] && extra=(--soak 600)
  if is_harness "$part"; then
    cargo bench --locked --profile "$profile" --bench "$part" -- $quick "${extra[@]}" --markdown "$out/$part.md" \
      2>&1 | tee "$out/$part.log" >&2 || failed+=("$part")
  else
    # Criterion: --quick stops each benchmark as soon as its estimate is
    # stable enough, which is what a smoke run needs.
    cargo bench --locked --profile "$profile" --bench "$part" -- $quick 2>&1 | tee "$out/$part.log" >&2 \
      && python3 bench/criterion_table.py "$part" $quick <"$out/$part.log" >"$out/$part.md" \
      || failed+=("$part")
  fi
done

if [ -n "$quick" ]; then
  cat "$out"/*.md 2>/dev/null || true
else
  python3 bench/splice.py BENCHMARKS.md "$out"
  echo "bench/run.sh: BENCHMARKS.md updated from $out" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench/run.sh: failed: ${failed[*]} (logs in $out)" >&2
  exit 1
fi
