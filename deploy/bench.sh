#!/usr/bin/env bash
# Load benchmark of selfprov (issue 6): starts a release `selfprov serve` with a temporary SQLite
# store seeded with USERS users, runs `selfprov-load` against it at each call count of CALLS, and
# appends one JSON line per run to RESULTS (the readable tables go to stderr and RESULTS.txt).
#
#   deploy/bench.sh                      # 100 and 1000 calls, 300 set-ups/s, the SIPp
#                                        # cross-check, a 100-call provisioning run
#   CALLS="100 1000 5000" deploy/bench.sh
#   CALLS=" " SETUP_CALLS=0 SIPP_CALLS=0 PROVISION_CALLS=0 deploy/bench.sh   # the notify phase only
#   SKIP_BUILD=1 RESULTS=/tmp/r.jsonl deploy/bench.sh
#
# Scenarios:
#   media      every call hears the prompts, types its own self-provisioning ID ({n}#, a store
#              lookup among USERS users) 3 s after the answer, then listens for HOLD; the IVR's
#              first-digit timeout is raised so the calls stay up for the whole hold. This is
#              the steady-state per-call cost (RTP out, RTP in, DTMF receiver, timers).
#   provision  PROVISION_CALLS calls (default 100) at PROVISION_RATE (default 5/s) each do a
#              real provisioning: ID, PIN (argon2 verify), confirm; the server hangs up after
#              the success prompt. Set PROVISION_CALLS=0 to skip.
#   setup      SETUP_CALLS calls (default 1500) at SETUP_RATE (default 300/s): INVITE-to-200
#              latency under a sustained set-up rate. SETUP_CALLS=0 skips.
#   notify     NOTIFY_CALLS new phones (default 100) at NOTIFY_RATE (default 2/s) provision
#              themselves while NOTIFY_BACKGROUND other calls (default 1000) are up: each
#              fetches its guest config over HTTP, registers (digest), dials the IVR (407),
#              types ID, PIN and confirmation, and after the server's hang-up gets the resync
#              NOTIFY; selfprov-load --register times last key → NOTIFY and its parts (key →
#              sound of the success prompt, the prompt, BYE → NOTIFY). NOTIFY_CALLS=0 skips.
#   xcheck     SIPP_CALLS calls (default 100) at RATE, 20 s each, once from selfprov-load and once
#              from SIPp (deploy/sipp/uac_hold.xml), while tshark captures the server's RTP on
#              the loopback: the failures of both, the jitter selfprov-load reports, and the
#              jitter of each capture (deploy/rtp_jitter.py), so the load generator is checked
#              against an independent peer and an independent measurement. Needs sipp
#              (sip-tester) and tshark; SIPP_CALLS=0 skips.
#   PBX=kamailio adds a `kamailio` connector ([[pbx]], on a SQLite database of Kamailio's own
#              schema from /usr/share/kamailio, package kamailio-sqlite-modules) to every phase;
#              after the notify phase the server's histograms give the binding → subscriber row
#              delay under the background load and the IVR's binding time (run once without PBX
#              for the comparison).
#   outage     with PBX set, OUTAGE_CALLS provisioning calls (default 0: skipped; 1000 for the
#              documented figure) at OUTAGE_RATE (default 20/s) while Kamailio's database is
#              missing; then the database appears and the time for the outbox to drain is taken.
#
#   PBX=kamailio CALLS=" " SETUP_CALLS=0 SIPP_CALLS=0 PROVISION_CALLS=0 OUTAGE_CALLS=1000 deploy/bench.sh
#
# Everything runs on 127.0.0.1. Needs: cargo, and `ulimit -n` above 2 x the largest call count
# (one RTP socket per call on each side).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CALLS=${CALLS:-"100 1000"}
RATE=${RATE:-100}
USERS=${USERS:-3000}
PIN=${PIN:-4321}
PROVISION_CALLS=${PROVISION_CALLS:-100}
PROVISION_RATE=${PROVISION_RATE:-5}
SETUP_CALLS=${SETUP_CALLS:-1500}
SETUP_RATE=${SETUP_RATE:-300}
SIPP_CALLS=${SIPP_CALLS:-100}
NOTIFY_CALLS=${NOTIFY_CALLS:-100}
NOTIFY_RATE=${NOTIFY_RATE:-2}
NOTIFY_BACKGROUND=${NOTIFY_BACKGROUND:-1000}
PBX=${PBX:-}
OUTAGE_CALLS=${OUTAGE_CALLS:-0}
OUTAGE_RATE=${OUTAGE_RATE:-20}
RESULTS=${RESULTS:-"$ROOT/target/bench-results.jsonl"}
LOG_LEVEL=${LOG_LEVEL:-info}
# rtp.realtime_priority of the server: 0 (default) or a SCHED_FIFO priority for its media threads.
REALTIME=${REALTIME:-0}
# On a shared machine, run the server and the load generator ahead of other work (builds...):
# NICE=-5 when root, unless set. The figures still depend on what else runs: the load average
# before each run is written next to it.
if [ -z "${NICE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then NICE=-5; else NICE=0; fi
fi
# PIN_CPUS=1 (default with 2+ cores and taskset): the server on CPU 0, the load generator on CPU 1,
# as the targets assume (the server in one core, the other left to the load and the kernel).
PIN_CPUS=${PIN_CPUS:-1}
SERVER_CPU=()
LOAD_CPU=()
if [ "$PIN_CPUS" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
fi

need=$(( $(echo "$CALLS $PROVISION_CALLS $((NOTIFY_BACKGROUND + NOTIFY_CALLS))" | tr ' ' '\n' | sort -n | tail -1) * 2 + 200 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || {
        echo "bench.sh: ulimit -n is $(ulimit -n), $need needed" >&2
        exit 2
    }
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --bin selfprov --bin selfprov-load
fi
SELFPROV="$ROOT/target/release/selfprov"
LOAD="$ROOT/target/release/selfprov-load"

WORK=$(mktemp -d /tmp/selfprov-bench.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "bench.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# $1 = auth mode, $2 = first-digit timeout (ms)
write_config() {
    cat >"$WORK/selfprov.toml" <<EOF
[sip]
listen = "127.0.0.1:0"
max_calls = 20000
[rtp]
port_min = 10000
port_max = 30000
inactivity_timeout_ms = 30000
realtime_priority = $REALTIME
[ivr]
extensions = ["8000"]
auth_mode = "$1"
first_digit_timeout_ms = $2
inter_digit_timeout_ms = 5000
[store]
url = "sqlite://$WORK/selfprov.db"
[http]
listen = "127.0.0.1:0"
[provisioning]
http_listen = "127.0.0.1:0"
# Every simulated phone fetches from 127.0.0.1: the per-address budget for unknown MACs (a
# defence against MAC scanners, 30 a minute by default) would refuse most of them.
unknown_mac_per_minute = 100000
[registrar]
max_guests = 5000
[log]
level = "$LOG_LEVEL"
EOF
    if [ -n "$PBX" ]; then
        cat >>"$WORK/selfprov.toml" <<EOF
[[pbx]]
name = "kamailio"
kind = "kamailio"
registrar = "127.0.0.1:5060"
db_url = "sqlite://$WORK/kamailio.db"
EOF
    fi
}

# Kamailio's tables in $WORK/kamailio.db, from the SQL its packages ship.
make_kamailio_db() {
    python3 - "$WORK/kamailio.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for name in ("standard", "auth_db", "usrloc"):
    db.executescript(open(f"/usr/share/kamailio/db_sqlite/{name}-create.sql").read())
db.commit()
PY
}

subscriber_rows() {
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM subscriber").fetchone()[0])' "$WORK/kamailio.db"
}

# $1 = label: p50/p90/p99 of the server's histograms selfprov_binding_seconds and
# selfprov_pbx_delivery_seconds (interpolated within the bucket), from /metrics.
report_histograms() {
    local label=$1 json
    json=$(curl -s "http://$API/metrics" | python3 "$ROOT/deploy/histogram_quantiles.py")
    echo "bench.sh: $label: $json" | tee -a "$RESULTS.txt" >&2
    echo "{\"label\":\"$label\",\"histograms\":$json}" >>"$RESULTS"
}

seed_users() {
    echo "bench.sh: seeding $USERS users (argon2 PIN hashes: about a minute per few thousand)" >&2
    {
        echo "user_id,extension,selfprov_id,first_name,last_name,pin"
        for ((i = 0; i < USERS; i++)); do
            echo "u$i,$((200000 + i)),$((100000 + i)),Load,User$i,$PIN"
        done
    } >"$WORK/users.csv"
    "$SELFPROV" user import --config "$WORK/selfprov.toml" "$WORK/users.csv" >"$WORK/import.json"
    grep -q "\"created\": *$USERS" "$WORK/import.json" || {
        echo "bench.sh: user import did not create $USERS users:" >&2
        head -c 2000 "$WORK/import.json" >&2
        exit 1
    }
}

start_server() {
    nice -n "$NICE" "${SERVER_CPU[@]}" "$SELFPROV" serve --config "$WORK/selfprov.toml" \
        >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        SIP=$(sed -n 's/^SIP listening on \(.*\) (udp+tcp)$/\1/p' "$WORK/server.out")
        PROV=$(sed -n 's|^Provisioning listening on http://\(.*\)/$|\1|p' "$WORK/server.out")
        API=$(sed -n 's|^API listening on http://\(.*\)/api/v1$|\1|p' "$WORK/server.out")
        [ -n "$SIP" ] && [ -n "$PROV" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench.sh: selfprov did not start:" >&2
    tail -20 "$WORK/server.err" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

machine() {
    printf '%s, %s cores, %s' \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

# $1 = label, then selfprov-load arguments
run_load() {
    local label=$1
    shift
    echo "bench.sh: $label (load average before: $(cut -d' ' -f1-3 /proc/loadavg))" \
        | tee -a "$RESULTS.txt" >&2
    local out
    # Exit status 1 means some calls failed: still a result to record.
    out=$(nice -n "$NICE" "${LOAD_CPU[@]}" "$LOAD" --target "$SIP" --server-pid "$SERVER_PID" --label "$label" "$@") || [ $? = 1 ]
    echo "$out" | sed '$d' | tee -a "$RESULTS.txt" >&2
    echo "$out" | tail -1 >>"$RESULTS"
}

mkdir -p "$(dirname "$RESULTS")"
echo "# $(date -u +%FT%TZ) $(machine) USERS=$USERS NICE=$NICE CPUS=${SERVER_CPU[*]:-any} REALTIME=$REALTIME" \
    | tee -a "$RESULTS.txt" >&2

write_config secure-users 600000
if [ -n "$PBX" ]; then make_kamailio_db; fi
seed_users
cp "$WORK/selfprov.db" "$WORK/seeded.db"

for n in $CALLS; do
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm"
    start_server
    sleep 1 # idle RSS after start-up settles
    ramp=$(( (n + RATE - 1) / RATE ))
    run_load "media n=$n rate=$RATE" --calls "$n" --rate "$RATE" \
        --hold "$((ramp + 20))s" --digits "{n}#" --digit-pauses 3s --index-base 100000 \
        --setup-timeout 10s
    stop_server
done

if [ "$SETUP_CALLS" -gt 0 ]; then
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm"
    start_server
    sleep 1
    ramp=$(( (SETUP_CALLS + SETUP_RATE - 1) / SETUP_RATE ))
    run_load "setup n=$SETUP_CALLS rate=$SETUP_RATE" --calls "$SETUP_CALLS" --rate "$SETUP_RATE" \
        --hold "$((ramp + 5))s" --index-base 100000 --setup-timeout 10s
    stop_server
fi

if [ "$NOTIFY_CALLS" -gt 0 ]; then
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm"
    # Guest numbers for the new phones, clear of the users' extensions (200000...).
    "$SELFPROV" settings update --config "$WORK/selfprov.toml" \
        --data '{"autoreg_start_dn": "300000", "autoreg_end_dn": "309999"}' >/dev/null
    start_server
    sleep 1
    # The background calls: up before the first phone dials, until after the last one is done.
    bramp=$(( (NOTIFY_BACKGROUND + RATE - 1) / RATE ))
    nramp=$(( (NOTIFY_CALLS + NOTIFY_RATE - 1) / NOTIFY_RATE ))
    # A provisioning call lasts about 30 s: keys from 3 s, the confirmation 10 s after the PIN
    # (once the confirmation prompts have ended, so the first sound after it is the success
    # prompt's), then the success prompt (about 9.5 s).
    bhold=$(( nramp + 70 ))
    echo "bench.sh: notify: $NOTIFY_BACKGROUND background calls, then $NOTIFY_CALLS phones" \
        | tee -a "$RESULTS.txt" >&2
    nice -n "$NICE" "${LOAD_CPU[@]}" "$LOAD" --target "$SIP" --label "notify background n=$NOTIFY_BACKGROUND" \
        --calls "$NOTIFY_BACKGROUND" --rate "$RATE" --hold "${bhold}s" --digits "{n}#" \
        --digit-pauses 3s --index-base 100000 --setup-timeout 10s >"$WORK/background.out" 2>&1 &
    BACKGROUND_PID=$!
    sleep $(( bramp + 5 ))
    run_load "notify phones n=$NOTIFY_CALLS rate=$NOTIFY_RATE background=$NOTIFY_BACKGROUND" \
        --register "$PROV" --calls "$NOTIFY_CALLS" --rate "$NOTIFY_RATE" --hold 40s \
        --digits "{n}#,$PIN#,1" --digit-pauses 3s,1500ms,10s --index-base 101000 \
        --notify-timeout 10s --setup-timeout 10s
    bound=$("$SELFPROV" device list --json --config "$WORK/selfprov.toml" | grep -o '"owner": *"u[0-9]*"' | wc -l)
    echo "bench.sh: notify: devices bound: $bound of $NOTIFY_CALLS" | tee -a "$RESULTS.txt" >&2
    if [ -n "$PBX" ]; then
        sleep 2
        echo "bench.sh: notify: Kamailio subscriber rows: $(subscriber_rows) of $bound" | tee -a "$RESULTS.txt" >&2
    fi
    report_histograms "notify pbx=${PBX:-none} background=$NOTIFY_BACKGROUND"
    wait "$BACKGROUND_PID" || true
    sed '$d' "$WORK/background.out" | tee -a "$RESULTS.txt" >&2
    tail -1 "$WORK/background.out" >>"$RESULTS"
    stop_server
fi

# $1 = label: the jitter of the server's RTP in $WORK/xcheck.pcap, as a JSON line in RESULTS.
capture_jitter() {
    local j
    # Port 47000 (SIPp's media port) is registered to another protocol: decode it as RTP.
    j=$(tshark -r "$WORK/xcheck.pcap" -o rtp.heuristic_rtp:TRUE -d udp.port==47000,rtp -T fields -E separator=/t \
        -e frame.time_epoch -e udp.srcport -e udp.dstport -e rtp.seq -e rtp.p_type 2>/dev/null \
        | python3 "$ROOT/deploy/rtp_jitter.py")
    echo "bench.sh: $1: RTP jitter in the capture: $j" | tee -a "$RESULTS.txt" >&2
    echo "{\"label\":\"$1\",\"capture_rtp_deviation\":$j}" >>"$RESULTS"
}

start_capture() {
    rm -f "$WORK/xcheck.pcap"
    tshark -i lo -q -f "udp and src portrange 10000-30000" -w "$WORK/xcheck.pcap" 2>"$WORK/tshark.err" &
    CAPTURE_PID=$!
    # tshark says "Capturing on 'Loopback'" once it is ready.
    for _ in $(seq 1 100); do
        grep -q "Capturing on" "$WORK/tshark.err" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench.sh: tshark did not start capturing: $(cat "$WORK/tshark.err")" >&2
    exit 1
}

stop_capture() {
    sleep 1
    kill -INT "$CAPTURE_PID" 2>/dev/null || true
    wait "$CAPTURE_PID" 2>/dev/null || true
}

if [ "$SIPP_CALLS" -gt 0 ]; then
    for tool in sipp tshark; do
        command -v "$tool" >/dev/null || {
            echo "bench.sh: the SIPp cross-check needs $tool (apt-get install sip-tester tshark), or SIPP_CALLS=0" >&2
            exit 1
        }
    done
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm"
    start_server
    sleep 1
    start_capture
    run_load "xcheck selfprov-load n=$SIPP_CALLS rate=$RATE" --calls "$SIPP_CALLS" --rate "$RATE" \
        --hold 20s --index-base 100000 --setup-timeout 10s
    stop_capture
    capture_jitter "xcheck selfprov-load n=$SIPP_CALLS rate=$RATE"

    start_capture
    echo "bench.sh: xcheck sipp n=$SIPP_CALLS rate=$RATE (load average before: $(cut -d' ' -f1-3 /proc/loadavg))" \
        | tee -a "$RESULTS.txt" >&2
    status=0
    (cd "$WORK" && nice -n "$NICE" "${LOAD_CPU[@]}" sipp -sf "$ROOT/deploy/sipp/uac_hold.xml" \
        -i 127.0.0.1 -mi 127.0.0.1 -mp 47000 -s 8000 -set hold_ms 20000 \
        -m "$SIPP_CALLS" -r "$RATE" -l "$SIPP_CALLS" -nostdin -timeout 90s \
        -trace_stat -stf "$WORK/sipp_stat.csv" -fd 1 -trace_screen -screen_file "$WORK/sipp_screen.log" \
        -trace_rtt -rtt_freq 1 \
        "$SIP" >"$WORK/sipp.out" 2>&1) || status=$?
    stop_capture
    # The statistics file's last line: calls that succeeded and failed; the response-time file:
    # every call's INVITE-to-200 (ms).
    sipp_json=$(python3 - "$WORK/sipp_stat.csv" "$status" "$WORK"/uac_hold_*_rtt.csv <<'PY'
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
rtt = []
for path in sys.argv[3:]:
    for line in open(path):
        f = line.strip().split(";")
        try:
            rtt.append(float(f[1]))
        except (IndexError, ValueError):
            pass
rtt.sort()
pct = lambda p: rtt[min(len(rtt) - 1, int(p * len(rtt)))] if rtt else None
print(json.dumps({
    "sipp_exit": int(sys.argv[2]),
    "calls_successful": int(col("SuccessfulCall(C)")),
    "calls_failed": int(col("FailedCall(C)")),
    "setup_samples": len(rtt),
    "setup_p50_ms": pct(0.5),
    "setup_p99_ms": pct(0.99),
    "setup_max_ms": rtt[-1] if rtt else None,
}))
PY
)
    echo "bench.sh: xcheck sipp n=$SIPP_CALLS rate=$RATE: $sipp_json" | tee -a "$RESULTS.txt" >&2
    echo "{\"label\":\"xcheck sipp n=$SIPP_CALLS rate=$RATE\",\"sipp\":$sipp_json}" >>"$RESULTS"
    capture_jitter "xcheck sipp n=$SIPP_CALLS rate=$RATE capture"
    stop_server
fi

if [ "$PROVISION_CALLS" -gt 0 ]; then
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm"
    write_config secure-users 10000
    start_server
    sleep 1
    run_load "provision n=$PROVISION_CALLS rate=$PROVISION_RATE" --calls "$PROVISION_CALLS" \
        --rate "$PROVISION_RATE" --hold 40s --digits "{n}#,$PIN#,1" \
        --digit-pauses 3s,1500ms,5500ms --index-base 100000
    bound=$("$SELFPROV" device list --json --config "$WORK/selfprov.toml" | grep -o '"owner": *"u[0-9]*"' | wc -l)
    echo "bench.sh: devices bound after the provisioning run: $bound of $PROVISION_CALLS" | tee -a "$RESULTS.txt" >&2
    stop_server
fi
if [ -n "$PBX" ] && [ "$OUTAGE_CALLS" -gt 0 ]; then
    cp "$WORK/seeded.db" "$WORK/selfprov.db"
    rm -f "$WORK/selfprov.db-wal" "$WORK/selfprov.db-shm" "$WORK/kamailio.db"
    write_config secure-users 10000
    start_server
    sleep 1
    run_load "outage provision n=$OUTAGE_CALLS rate=$OUTAGE_RATE (Kamailio's database missing)" \
        --calls "$OUTAGE_CALLS" --rate "$OUTAGE_RATE" --hold 40s --digits "{n}#,$PIN#,1" \
        --digit-pauses 3s,1500ms,5500ms --index-base 100000
    pending() {
        "$SELFPROV" pbx status --json --config "$WORK/selfprov.toml" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pending"])'
    }
    before=$(pending)
    make_kamailio_db
    t0=$(date +%s.%N)
    for _ in $(seq 1 6000); do
        [ "$(pending)" = 0 ] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    rows=$(subscriber_rows)
    drain=$(python3 -c "print(round($t1 - $t0, 2))")
    echo "bench.sh: outage: $before changes pending; database back: drained in ${drain}s ($rows subscriber rows)" \
        | tee -a "$RESULTS.txt" >&2
    echo "{\"label\":\"outage n=$OUTAGE_CALLS\",\"pending\":$before,\"drain_s\":$drain,\"subscriber_rows\":$rows}" >>"$RESULTS"
    report_histograms "outage pbx=$PBX"
    stop_server
fi
echo "bench.sh: results appended to $RESULTS (tables in $RESULTS.txt)" >&2
