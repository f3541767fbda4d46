#!/usr/bin/env bash
# demo.sh — LVS persistence through the DPDK director, as the seeds tell it, in network
# namespaces with real clients (curl, a telnet-like TCP client) and two real servers.
#
#   client 198.51.100.50 (+ .51) ─┐
#   director (DPDK) ──────────────┤  bridge br0 in namespace "switch"      VIP 198.51.100.100
#   rs1 198.51.100.11 ────────────┤  (one L2 segment, 198.51.100.0/24)
#   rs2 198.51.100.12 ────────────┘
#
# The story (each step prints the commands an operator types and what they show):
#   1. rr without persistence: every refresh goes to the other server;
#   2. PPC: `-p` on :80 makes a client stick; a second persistent service on :23 (telnet)
#      has its own template and sticks independently;
#   3. PCC: a port-0 service sends every port of a client to one server; another client may
#      go elsewhere;
#   4. a firewall-mark group 80+443 made with the iptables syntax: grouped ports stick
#      together, an ungrouped port (23, plain rr) does not;
#   5. `lbadm -L -n -c` shows the persistence templates, `--persistent-conn` counts them;
#   6. what Prometheus sees (`--metrics`: node_exporter's IPVS names);
#   7. health checks: HTTP_GET on both servers (`lbadm check add`), rs1's web server is killed
#      and leaves `-L -n`, restarted and comes back; one log line per change.
# It ends with a summary table.
#
# * The director's veth has no kernel IP address: the director's DPDK net_af_packet port
#   (dpdk0) owns it. The director holds 198.51.100.2/24 and the VIP, answers ARP for both,
#   resolves the real servers by ARP and forwards client->VIP packets by DR (only the Ethernet
#   header changes).
# * The real servers hold the VIP on `lo` (arp_ignore=1, arp_announce=2, so they never answer
#   ARP for it), accept the forwarded packets as their own and answer the client directly.
# * Each real server answers with its name: HTTP on 80 and 443 (scripts/testbed-httpd.py),
#   a "telnet" banner on 23 (scripts/testbed-probe.py serve-tcp).
#
# Usage: scripts/demo.sh [--no-director]
#   --no-director   build the testbed and check the real servers directly, without the director
#                   (checks the host: namespaces, bridge, servers, curl)
# Env:   DIRECTOR_BIN, LBADM_BIN (default: <repo>/target/release/{director,lbadm}), PYTHON,
#        DEMO_KEEP=1 keeps the work directory (logs) after the demo.
# Exit:  0 when every step of the story behaved as LVS does (the summary table says which).
#
# Everything is created under unique names (prefix lbdemo-<pid>-) and removed by the EXIT trap,
# which kills only the processes this script started, by PID.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIRECTOR_BIN=${DIRECTOR_BIN:-$REPO/target/release/director}
LBADM_BIN=${LBADM_BIN:-$REPO/target/release/lbadm}
HTTPD=$REPO/scripts/testbed-httpd.py
PROBE=$REPO/scripts/testbed-probe.py
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

WITH_DIRECTOR=1
case "${1:-}" in
    --no-director) WITH_DIRECTOR=0 ;;
    "") ;;
    *) echo "usage: $0 [--no-director]" >&2; exit 2 ;;
esac

# ---- names and addresses (TEST-NET-2 only, inside our own namespaces) ------------------------
P="lbdemo-$$"
NS_SW="$P-switch"; NS_CLIENT="$P-client"; NS_DIR="$P-director"; NS_RS1="$P-rs1"; NS_RS2="$P-rs2"
VIP=198.51.100.100
DIR_IP=198.51.100.2
CLIENT_IP=198.51.100.50
CLIENT2_IP=198.51.100.51
METRICS=127.0.0.1:9120                # the director's --metrics (its namespace's loopback)
RS1_IP=198.51.100.11
RS2_IP=198.51.100.12
PREFIX_LEN=24
EAL_PREFIX="$P"                      # DPDK --file-prefix: unique per process
WORK=$(mktemp -d "/tmp/$P.XXXXXX")
SOCK="$WORK/director.sock"
DIRECTOR_LOG="$WORK/director.log"

CREATED_NS=()      # namespaces we created, deleted by cleanup
STARTED_PIDS=()    # processes we started (servers), killed by PID in cleanup
DIRECTOR_PID=""
declare -A HTTP80_PID  # real server name -> PID of its :80 web server (step 7 kills rs1's)

# ---- output helpers --------------------------------------------------------------------------
STEP=0
if [[ -t 1 ]]; then BOLD=$'\033[1m' RED=$'\033[1;31m' GREEN=$'\033[1;32m' OFF=$'\033[0m'
else BOLD="" RED="" GREEN="" OFF=""; fi
section() { STEP=$((STEP + 1)); printf '\n%s==> [%d] %s%s\n' "$BOLD" "$STEP" "$*" "$OFF"; }
info()    { printf '    %s\n' "$*"; }
fail()    { printf '\n%sDEMO FAILED: %s%s\n' "$RED" "$*" "$OFF" >&2; exit 1; }
nsx()     { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- teardown: only what we created ----------------------------------------------------------
stop_pid() {   # stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL
    local pid=$1 secs=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM        # a second Ctrl-C must not interrupt the teardown itself
    set +e
    if [[ -n $DIRECTOR_PID ]]; then
        stop_pid "$DIRECTOR_PID" 10
        if [[ $rc -ne 0 && -s $DIRECTOR_LOG ]]; then
            echo "---- director log (last 40 lines) ----" >&2
            tail -n 40 "$DIRECTOR_LOG" >&2
        fi
    fi
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid" 3; done
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "/var/run/dpdk/$EAL_PREFIX"
    if [[ ${DEMO_KEEP:-0} == 1 ]]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    [[ $STEP -gt 0 ]] && printf '\n==> teardown: removed %d namespaces, stopped %d processes\n' \
        "${#CREATED_NS[@]}" "$(( ${#STARTED_PIDS[@]} + (${DIRECTOR_PID:+1}+0) ))"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- preconditions ---------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || fail "run as root (network namespaces); try: sudo make demo"
for tool in ip ethtool curl sysctl "$PYTHON"; do
    command -v "$tool" >/dev/null || fail "missing tool '$tool' (run scripts/setup-host.sh)"
done
if ((WITH_DIRECTOR)); then
    [[ -x $DIRECTOR_BIN ]] || fail "no director binary at $DIRECTOR_BIN (cargo build --release)"
    [[ -x $LBADM_BIN ]] || fail "no lbadm binary at $LBADM_BIN (cargo build --release)"
fi

# ---- building blocks -------------------------------------------------------------------------
new_ns() {     # new_ns NAME: namespace with lo up and IPv6 off (no RS/DAD/MLD noise)
    ip netns add "$1"
    CREATED_NS+=("$1")
    ip -n "$1" link set lo up
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
offload_off() {  # checksum offload off: af_packet would otherwise see/send bad TCP checksums
    nsx "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 \
        || nsx "$1" ethtool -K "$2" tx off rx off >/dev/null
}
plug() {       # plug NODE_NS IFNAME SWITCH_PORT: veth from NODE_NS into the bridge
    local node=$1 ifname=$2 swport=$3
    ip -n "$NS_SW" link add "$swport" type veth peer name "$ifname" netns "$node"
    ip -n "$NS_SW" link set "$swport" master br0
    offload_off "$NS_SW" "$swport"
    offload_off "$node" "$ifname"
    ip -n "$NS_SW" link set "$swport" up
    ip -n "$node" link set "$ifname" up
}
mac_of() { ip -n "$1" -br link show dev "$2" | awk '{print $3}'; }
eal_memory_args() {  # same scheme as tests/src/director.rs eal_memory_args()
    local free mnt
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    mnt=$(awk '$3 == "hugetlbfs" {print $2; exit}' /proc/mounts)
    if [[ ${free:-0} -ge 128 && -n $mnt ]]; then
        echo "--file-prefix $EAL_PREFIX --in-memory -m 256"
    else
        echo "--file-prefix $EAL_PREFIX --no-huge -m 512 --no-shconf"
    fi
}
lb() {         # lbadm through the director's control socket, echoing the command
    printf '    $ lbadm %s\n' "$*"
    "$LBADM_BIN" --socket "$SOCK" "$@" | sed 's/^/      /'
    return "${PIPESTATUS[0]}"
}
start_web() {  # start_web NS NAME PORT: the server's HTTP answering NAME
    ip netns exec "$1" "$PYTHON" "$HTTPD" --name "$2" --bind 0.0.0.0 --port "$3" \
        >>"$WORK/$2-$3.log" 2>&1 &
    STARTED_PIDS+=("$!")
    [[ $3 == 80 ]] && HTTP80_PID[$2]=$!
    return 0
}
start_real_server() {  # start_real_server NS NAME IP
    local ns=$1 name=$2 ip=$3
    ip -n "$ns" addr add "$ip/$PREFIX_LEN" dev eth0
    ip -n "$ns" addr add "$VIP/32" dev lo
    nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    # `ip netns exec` (not the nsx function) so that $! is the server's own PID: bash forks and
    # execs ip, which enters the namespace and execs python in place.
    local port
    for port in 80 443; do start_web "$ns" "$name" "$port"; done
    ip netns exec "$ns" "$PYTHON" "$PROBE" serve-tcp --name "$name" --port 23 \
        >"$WORK/$name-23.log" 2>&1 &
    STARTED_PIDS+=("$!")
}
wait_http() {  # wait_http NS URL EXPECTED: poll (bounded: 50 x 0.1 s)
    local i out
    for ((i = 0; i < 50; i++)); do
        out=$(nsx "$1" curl -s --max-time 1 "$2" 2>/dev/null || true)
        [[ $out == "$3" ]] && return 0
        sleep 0.1
    done
    return 1
}

# ---- leftovers of an earlier demo that was killed (SIGKILL: no trap ran) --------------------
# Only namespaces named lbdemo-<pid>-… whose <pid> is dead: they can only be ours.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lbdemo-[0-9]+-' || true); do
    owner=${ns#lbdemo-}; owner=${owner%%-*}
    if [[ ! -d /proc/$owner ]]; then
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null && echo "removed stale namespace $ns from an earlier run"
        rm -rf "/var/run/dpdk/lbdemo-$owner"
    fi
done

# ---- 1. topology -----------------------------------------------------------------------------
section "Topology: namespaces $P-{switch,client,director,rs1,rs2}, one bridge, one /24"
new_ns "$NS_SW"
ip -n "$NS_SW" link add br0 type bridge stp_state 0 forward_delay 0
ip -n "$NS_SW" link set br0 up
for ns in "$NS_CLIENT" "$NS_DIR" "$NS_RS1" "$NS_RS2"; do new_ns "$ns"; done
plug "$NS_CLIENT" eth0 client0
plug "$NS_DIR"    eth0 dir0
plug "$NS_RS1"    eth0 rs1-0
plug "$NS_RS2"    eth0 rs2-0
info "bridge br0 ports: $(ip -n "$NS_SW" -br link show master br0 | awk '{sub(/@.*/, "", $1); printf "%s ", $1}')"
info "checksum/segmentation offloads off on both ends of every veth"

# ---- 2. hosts --------------------------------------------------------------------------------
section "Hosts: client, real servers (VIP $VIP on lo, arp_ignore=1/arp_announce=2)"
ip -n "$NS_CLIENT" addr add "$CLIENT_IP/$PREFIX_LEN" dev eth0
ip -n "$NS_CLIENT" addr add "$CLIENT2_IP/$PREFIX_LEN" dev eth0
info "client   $CLIENT_IP/$PREFIX_LEN and $CLIENT2_IP on eth0 (two client hosts in one namespace)"
start_real_server "$NS_RS1" rs1 "$RS1_IP"
start_real_server "$NS_RS2" rs2 "$RS2_IP"
info "rs1      $RS1_IP/$PREFIX_LEN on eth0, $VIP/32 on lo, answers 'rs1' on :80 :443 (http) and :23 (telnet)"
info "rs2      $RS2_IP/$PREFIX_LEN on eth0, $VIP/32 on lo, answers 'rs2' on :80 :443 (http) and :23 (telnet)"
# The af_packet port only taps eth0: keep the namespace's own stack off it (the director's
# kernel leg, dpdk0, is where the host meets the segment).
nsx "$NS_DIR" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.eth0.rp_filter=1 net.ipv4.conf.eth0.arp_ignore=8
info "director eth0 $(mac_of "$NS_DIR" eth0): no kernel address, IPv6 off, host stack off it (owned by DPDK)"

section "Sanity: the real servers answer on their own addresses (no director involved)"
for pair in "rs1 $NS_RS1 $RS1_IP" "rs2 $NS_RS2 $RS2_IP"; do
    read -r name ns ip <<<"$pair"
    wait_http "$ns" "http://127.0.0.1/" "$name" || fail "$name's http server did not start"
    wait_http "$ns" "http://127.0.0.1:443/" "$name" || fail "$name's http server on :443 did not start"
    for ((i = 0; i < 50; i++)); do
        nsx "$ns" "$PYTHON" "$PROBE" tcp --dst 127.0.0.1 --port 23 --timeout 1 >/dev/null 2>&1 && break
        sleep 0.1
    done
    out=$(nsx "$NS_CLIENT" curl -s --max-time 3 "http://$ip/") || true
    [[ $out == "$name" ]] || fail "client -> $ip answered '$out', expected '$name'"
    info "client -> http://$ip/ : $out"
done

if ((!WITH_DIRECTOR)); then
    section "Done (--no-director): testbed and servers work"
    exit 0
fi

# ---- 3. director -----------------------------------------------------------------------------
section "Director: DPDK net_af_packet on the director's veth, control socket $SOCK"
# shellcheck disable=SC2207
EAL=(-l 0 --no-pci --log-level 4 $(eal_memory_args) --vdev "net_af_packet0,iface=eth0")
info "ip netns exec $NS_DIR director ${EAL[*]} -- --socket $SOCK --metrics $METRICS"
ip netns exec "$NS_DIR" "$DIRECTOR_BIN" "${EAL[@]}" -- --socket "$SOCK" --metrics "$METRICS" \
    >"$DIRECTOR_LOG" 2>&1 &
DIRECTOR_PID=$!
for ((i = 0; i < 300; i++)); do          # bounded: 30 s
    [[ -S $SOCK ]] && break
    kill -0 "$DIRECTOR_PID" 2>/dev/null || fail "director exited during start-up"
    sleep 0.1
done
[[ -S $SOCK ]] || fail "director's control socket did not appear within 30 s"
info "director running (pid $DIRECTOR_PID), control socket ready"

section "Configure: the director's address and the VIP (the seeds' eth0 and eth0:0)"
lb addr add "$DIR_IP/$PREFIX_LEN" dev dpdk0 || fail "addr add $DIR_IP"
lb addr add "$VIP/32" dev dpdk0 || fail "addr add $VIP"
lb addr show || true
# The real servers must be in some service for the director to resolve them (ARP).
lb -A -t "$VIP:80" -s rr || fail "-A"
lb -a -t "$VIP:80" -r "$RS1_IP:80" -g -w 1 || fail "-a rs1"
lb -a -t "$VIP:80" -r "$RS2_IP:80" -g -w 1 || fail "-a rs2"

section "Neighbours: wait until the director has resolved both real servers (ARP)"
reachable() { "$LBADM_BIN" --socket "$SOCK" neigh show 2>/dev/null \
    | awk -v ip="$1" '{f=0; r=0; for (i = 1; i <= NF; i++) { if ($i == ip) f=1; if ($i == "REACHABLE") r=1 } } f && r {ok=1} END {exit !ok}'; }
for ip in "$RS1_IP" "$RS2_IP"; do
    for ((i = 0; i < 100; i++)); do reachable "$ip" && break; sleep 0.1; done   # bounded: 10 s
    reachable "$ip" || { lb neigh show || true; fail "$ip not REACHABLE within 10 s"; }
done
lb neigh show || true

section "Kernel leg: the host's own stack on dpdk0 (same addresses as lbadm addr show)"
info "\$ ip -4 addr show dev dpdk0      (in the director's namespace)"
nsx "$NS_DIR" ip -4 addr show dev dpdk0 | sed 's/^/      /'
out=$(nsx "$NS_DIR" curl -s --max-time 3 "http://$RS1_IP/") || out="(no answer)"
info "\$ curl http://$RS1_IP/   (from the director host, through dpdk0) -> $out"
info "ssh, bird or keepalived on the director host use dpdk0 the same way"

section "Ping: client -> director address $DIR_IP (answered by the director itself)"
if nsx "$NS_CLIENT" ping -c 2 -i 0.2 -W 2 "$DIR_IP" | sed 's/^/    /'; then :; else
    info "(no answer to ping; continuing)"
fi

# ---- the persistence story -------------------------------------------------------------------
# Helpers: each prints the command a person would type on the client and what came back.
web() {        # web SRC PORT -> the answering server's name (or "(no answer)")
    local out
    out=$(nsx "$NS_CLIENT" curl -s --max-time 3 --interface "$1" "http://$VIP:$2/") || out="(no answer)"
    [[ -n $out ]] || out="(no answer)"
    printf '    $ curl --interface %s http://%s:%s/   -> %s\n' "$1" "$VIP" "$2" "$out" >&2
    printf '%s' "$out"
}
tel() {        # tel SRC -> the name in the telnet banner of VIP:23
    local out
    out=$(nsx "$NS_CLIENT" "$PYTHON" "$PROBE" tcp --dst "$VIP" --port 23 --src "$1" --timeout 3 2>/dev/null) \
        || out="(no answer)"
    [[ -n $out ]] || out="(no answer)"
    printf '    $ telnet -b %s %s 23   -> %s\n' "$1" "$VIP" "$out" >&2
    printf '%s' "$out"
}
all_same()  { local x; for x in "${@:2}"; do [[ $x == "$1" ]] || return 1; done; [[ $1 == rs? ]]; }
alternates() { local i a=("$@"); for ((i = 0; i < ${#a[@]}; i++)); do
    [[ ${a[i]} == rs? ]] || return 1; ((i == 0)) || [[ ${a[i]} != "${a[i-1]}" ]] || return 1; done; }
other() { [[ $1 == rs1 ]] && echo rs2 || echo rs1; }
SUMMARY=()     # "step|what|expected|observed|OK or FAIL"
FAILED=0
record() {     # record STEP WHAT EXPECTED OBSERVED CONDITION(0/1)
    local verdict=OK
    if [[ $5 != 0 ]]; then verdict=FAIL; FAILED=$((FAILED + 1)); fi
    SUMMARY+=("$1|$2|$3|$4|$verdict")
    printf '    => %s: %s\n' "$verdict" "$4"
}
check() { "$@" && echo 0 || echo 1; }

section "Step 1 — rr without persistence: \"every refresh changes the web server\""
lb -L -n || true
r=(); for n in 1 2 3 4; do r+=("$(web "$CLIENT_IP" 80)"); done
record 1 "rr on :80, no -p" "alternates" "${r[*]}" "$(check alternates "${r[@]}")"

section "Step 2 — PPC: -p on :80, and a second persistent service on :23"
lb -E -t "$VIP:80" -s rr -p || fail "-E -p"
lb -L -n || true
info "(-p without a value: persistent 360, as ipvsadm)"
r=(); for n in 1 2 3 4; do r+=("$(web "$CLIENT_IP" 80)"); done
S80=${r[0]}
record 2a "PPC -p on :80, client .50" "one server" "${r[*]}" "$(check all_same "${r[@]}")"
lb -A -t "$VIP:23" -s rr -p || fail "-A :23"
lb -a -t "$VIP:23" -r "$RS1_IP:23" -g -w 1 || fail "-a :23 rs1"
lb -a -t "$VIP:23" -r "$RS2_IP:23" -g -w 1 || fail "-a :23 rs2"
info "client .51 logs in first, so telnet's own rr hands client .50 the next server:"
first=$(tel "$CLIENT2_IP")
t=(); for n in 1 2 3; do t+=("$(tel "$CLIENT_IP")"); done
w=(); for n in 1 2; do w+=("$(web "$CLIENT_IP" 80)"); done
ok=1; all_same "${t[@]}" && all_same "$S80" "${w[@]}" && [[ ${t[0]} == "$(other "$first")" ]] && ok=0
record 2b "PPC -p on :23, client .50" "sticks on its own" "telnet ${t[*]}; web still ${w[*]}" "$ok"

section "Step 3 — PCC: a port-0 service, every port of a client to one server"
lb -C || fail "-C"
lb -A -t "$VIP:0" -s rr -p 600 || fail "-A :0"
lb -a -t "$VIP:0" -r "$RS1_IP" -g -w 2 || fail "-a :0 rs1"
lb -a -t "$VIP:0" -r "$RS2_IP" -g -w 1 || fail "-a :0 rs2"
lb -L -n || true
a=("$(web "$CLIENT_IP" 80)" "$(web "$CLIENT_IP" 443)" "$(tel "$CLIENT_IP")" "$(web "$CLIENT_IP" 80)")
record 3a "PCC :0, client .50 on 80 443 23 80" "one server" "${a[*]}" "$(check all_same "${a[@]}")"
b=("$(web "$CLIENT2_IP" 443)" "$(tel "$CLIENT2_IP")" "$(web "$CLIENT2_IP" 80)")
ok=1; all_same "${b[@]}" && [[ ${b[0]} == "$(other "${a[0]}")" ]] && ok=0
record 3b "PCC :0, client .51" "its own server (rr: the other)" "${b[*]}" "$ok"

section "Step 4 — firewall marks: 80 and 443 in one group (iptables syntax), 23 left out"
lb -C || fail "-C"
lb iptables -t mangle -A PREROUTING -d "$VIP" -p tcp --dport 80 -j MARK --set-mark 10 || fail "iptables 80"
lb iptables -t mangle -A PREROUTING -d "$VIP" -p tcp --dport 443 -j MARK --set-mark 10 || fail "iptables 443"
lb -A -f 10 -s rr -p || fail "-A -f 10"
lb -a -f 10 -r "$RS1_IP" -g -w 1 || fail "-a -f 10 rs1"
lb -a -f 10 -r "$RS2_IP" -g -w 1 || fail "-a -f 10 rs2"
lb -A -t "$VIP:23" -s rr || fail "-A :23"
lb -a -t "$VIP:23" -r "$RS1_IP:23" -g -w 1 || fail "-a :23 rs1"
lb -a -t "$VIP:23" -r "$RS2_IP:23" -g -w 1 || fail "-a :23 rs2"
lb iptables -t mangle -L PREROUTING -n || true
lb -L -n || true
g=("$(web "$CLIENT_IP" 80)" "$(web "$CLIENT_IP" 443)" "$(web "$CLIENT_IP" 80)" "$(web "$CLIENT_IP" 443)")
record 4a "FWM 10 = 80+443, -p, client .50" "one server for both ports" "${g[*]}" "$(check all_same "${g[@]}")"
u=(); for n in 1 2 3 4; do u+=("$(tel "$CLIENT_IP")"); done
record 4b ":23 outside the group, rr" "alternates" "${u[*]}" "$(check alternates "${u[@]}")"

section "Step 5 — the persistence table: templates (lbadm -L -n -c) and --persistent-conn"
info "templates: the entries with client port 0, one per client and service (port 0 for PCC,"
info "the mark as virtual address 0.0.0.10 for FWM); they outlive the connections they chose for"
conns=$("$LBADM_BIN" --socket "$SOCK" -L -n -c)
printf '    $ lbadm -L -n -c\n'; sed 's/^/      /' <<<"$conns"
templates=$(awk '$1 ~ /^(TCP|UDP|IP)$/ && $4 ~ /:0$/' <<<"$conns" | wc -l)
fwm=$(awk '$1 == "IP" && $4 == "'"$CLIENT_IP"':0" && $5 == "0.0.0.10:0"' <<<"$conns" | wc -l)
lb -L -n --persistent-conn || true
pc=$("$LBADM_BIN" --socket "$SOCK" -L -n --persistent-conn | awk '$1 == "->" && $2 ~ /^198/ {s += $4} END {print s + 0}')
ok=1; [[ $fwm -eq 1 && $pc -ge 1 ]] && ok=0
record 5 "-L -n -c, --persistent-conn" "templates listed and counted" \
    "$templates templates (FWM 10 of .50: $fwm), PersistConn $pc" "$ok"

section "Step 6 — what Prometheus sees (director --metrics $METRICS, node_exporter's names)"
info "\$ curl -s http://$METRICS/metrics | grep -e ^node_ipvs_backend_connections -e ^node_ipvs_connections"
metrics=$(nsx "$NS_DIR" curl -s --max-time 3 "http://$METRICS/metrics" || true)
grep -e '^node_ipvs_backend_connections' -e '^node_ipvs_connections' <<<"$metrics" | sed 's/^/      /'
n=$(grep -c '^node_ipvs_backend_weight{.*proto="FWM"' <<<"$metrics" || true)
record 6 "--metrics, node_exporter names" "FWM backends with local_mark" "$n FWM backends exported" "$(check test "$n" -eq 2)"

section "Step 7 — health checks: rs1's web server dies, leaves rotation, comes back"
lb -C || fail "-C"
lb -A -t "$VIP:80" -s rr || fail "-A :80"
lb -a -t "$VIP:80" -r "$RS1_IP:80" -g -w 1 || fail "-a rs1"
lb -a -t "$VIP:80" -r "$RS2_IP:80" -g -w 1 || fail "-a rs2"
info "keepalived.conf's HTTP_GET { url { path / status_code 200 } connect_timeout 1 retry 1"
info "delay_before_retry 1 } with delay_loop 1, as lbadm lines (probes go out through dpdk0):"
for ip in "$RS1_IP" "$RS2_IP"; do
    lb check add -t "$VIP:80" -r "$ip:80" http --url / --status-code 200 \
        --delay-loop 1 --connect-timeout 1 --retry 1 --delay-before-retry 1 || fail "check add $ip"
done
in_pool() { "$LBADM_BIN" --socket "$SOCK" -L -n | grep -q -- "-> $1:80 "; }
wait_pool() {  # wait_pool IP yes|no: bounded 10 s; prints the seconds it took
    local i t0=$SECONDS
    for ((i = 0; i < 100; i++)); do
        if in_pool "$1"; then [[ $2 == yes ]] && break; else [[ $2 == no ]] && break; fi
        sleep 0.1
    done
    echo $((SECONDS - t0))
}
for ((i = 0; i < 50; i++)); do   # bounded: both checkers have passed once
    [[ $("$LBADM_BIN" --socket "$SOCK" check show | grep -c 'HTTP status 200') -ge 2 ]] && break; sleep 0.1
done
lb check show || true
info "\$ kill ${HTTP80_PID[rs1]}      (rs1's web server on :80)"
stop_pid "${HTTP80_PID[rs1]}" 3
took=$(wait_pool "$RS1_IP" no)
lb -L -n || true
r=(); for n in 1 2 3; do r+=("$(web "$CLIENT_IP" 80)"); done
ok=1; ! in_pool "$RS1_IP" && all_same rs2 "${r[@]}" && ok=0
record 7a "HTTP_GET, rs1's server killed" "rs1 leaves -L -n, rs2 serves" \
    "gone after ~${took} s (bound 1 x (1+1) + 1 = 3 s); ${r[*]}" "$ok"
lb check show -t "$VIP:80" || true
info "\$ (restart rs1's web server)"
start_web "$NS_RS1" rs1 80
took=$(wait_pool "$RS1_IP" yes)
lb -L -n || true
r=(); for n in 1 2; do r+=("$(web "$CLIENT_IP" 80)"); done
ok=1; in_pool "$RS1_IP" && alternates "${r[@]}" && ok=0
record 7b "rs1's server restarted" "back within one delay_loop" "back after ~${took} s; ${r[*]}" "$ok"
info "the director's log, one line per change:"
grep -E ' health: ' "$DIRECTOR_LOG" | sed 's/^/      /' || true
info "\$ curl -s http://$METRICS/metrics | grep ^director_health_check"
nsx "$NS_DIR" curl -s --max-time 3 "http://$METRICS/metrics" | grep '^director_health_check_[ut]' | sed 's/^/      /' || true

# ---- summary ---------------------------------------------------------------------------------
printf '\n%s==> Summary%s\n' "$BOLD" "$OFF"
{
    echo "step|what|expected|observed|result"
    for row in "${SUMMARY[@]}"; do echo "$row"; done
} | awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR }
         END { for (r = 1; r <= n; r++) { line = "   "; for (i = 1; i <= 5; i++) line = line sprintf(" %-" w[i] "s", cell[r, i]); print line } }'
if ((FAILED)); then
    fail "$FAILED step(s) did not behave as LVS does (see the table)"
fi
printf '\n%sDEMO OK: rr, PPC, PCC, firewall-mark persistence and health checks behaved as the seeds describe (%ds)%s\n' \
    "$GREEN" "$SECONDS" "$OFF"
