#!/usr/bin/env bash
# Runs the whole selfprov test suite: unit tests, integration tests and the end-to-end tests
# with real SIP software (SIPp, baresip, Kamailio). On a fresh Debian/Ubuntu machine it first installs the
# test peers with apt-get; a peer that is still missing afterwards fails the run (e2e tests never
# skip). Must run as root: apt-get, and SIPp's pcap play needs a raw socket.
#
# Environment:
#   SELFPROV_TEST_RUNNER=cargo|nextest   test runner (default: nextest when installed)
#   SELFPROV_E2E_KEEP=1                  keep each e2e test's temp dir (config, store, logs)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Daemons such as kamailio install into sbin, which a non-login shell's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# tool -> Debian package
declare -A PEERS=(
  [sipp]=sip-tester
  [baresip]=baresip
  [espeak-ng]=espeak-ng
  [sox]=sox
  [tshark]=tshark
  [kamailio]=kamailio
)
# Packages without a binary of their own: checked with dpkg. libsox-fmt-all for sox; the
# Kamailio database modules for the configurations under deploy/kamailio/.
EXTRA_PACKAGES=(libsox-fmt-all kamailio-sqlite-modules kamailio-postgres-modules)

missing=()
for tool in "${!PEERS[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PEERS[$tool]}")
done
for pkg in "${EXTRA_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  echo "test.sh: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: must run as root to install packages (and for SIPp pcap play)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer it up front.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

for tool in "${!PEERS[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: $tool (package ${PEERS[$tool]}) is still missing" >&2
    exit 1
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: the e2e tests must run as root (SIPp play_pcap_audio uses a raw socket)" >&2
  exit 1
fi

echo "test.sh: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), $(baresip -h 2>&1 | head -1 | cut -d' ' -f1-2), $(tshark -v 2>/dev/null | head -1), $(kamailio -v 2>/dev/null | head -1)"

# PostgreSQL: a throwaway cluster for the store and API suites (installed with apt-get when
# missing). The PostgreSQL tests are #[ignore]d for a plain `cargo test`; here they run
# (--include-ignored), and with CI=true a missing database fails them rather than skipping.
# shellcheck source=scripts/pg-test-env.sh
. scripts/pg-test-env.sh
trap 'selfprov_pg_stop' EXIT

runner=${SELFPROV_TEST_RUNNER:-}
if [[ -z $runner ]]; then
  if cargo nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
fi

case $runner in
  nextest)
    # Every test in its own process; retries are off: a flaky e2e test is a bug to fix.
    cargo nextest run --all-targets --no-fail-fast --failure-output final --run-ignored all
    # nextest does not run doctests.
    cargo test --doc
    ;;
  cargo)
    cargo test --all-targets --no-fail-fast -- --include-ignored
    ;;
  *)
    echo "test.sh: unknown SELFPROV_TEST_RUNNER=$runner (cargo or nextest)" >&2
    exit 1
    ;;
esac
