#!/usr/bin/env bash
# Testbed self-check: runs the demo and the namespace DR tests against the MOCK director
# (mock-director.py / mock-lbadm.py, a tiny AF_PACKET DR forwarder in Python) instead of the
# real one. Passing here means the testbeds are sound; a failure of the same test against the
# real director then points at the director. Not part of `make test`. Run as root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export DIRECTOR_BIN="$HERE/mock-director.py" LBADM_BIN="$HERE/mock-lbadm.py"
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> demo against the mock director"
bash "$REPO/scripts/demo.sh"
echo "==> namespace DR tests against the mock director"
cd "$REPO" && cargo test -p tests --test netns_dr
