#!/usr/bin/env bash
# Try Hipper on several nodes on one machine: a throwaway PostgreSQL cluster, two `hipper serve` nodes and
# Kamailio in front of them (docs/scale-out.md). Phones register with the edge (EDGE_PORT) and never see a node.
#
#   deploy/scale-out/run.sh            # Ctrl-C stops everything and deletes the cluster
#
# Settings by environment: HIPPER (the hipper command; default the repository's .venv, else `hipper` on PATH),
# EDGE_PORT (5060), NODE_SIP_PORTS ("5071 5072"), NODE_HTTP_PORTS ("8081 8082"), PG_PORT (55432), RTP_PORT_BASE (40000),
# WORK (a new temporary directory). Everything listens on 127.0.0.1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
HIPPER="${HIPPER:-$( [ -x "$ROOT/.venv/bin/hipper" ] && echo "$ROOT/.venv/bin/hipper" || echo hipper )}"
EDGE_PORT="${EDGE_PORT:-5060}"
read -r -a SIP_PORTS <<< "${NODE_SIP_PORTS:-5071 5072}"
read -r -a HTTP_PORTS <<< "${NODE_HTTP_PORTS:-8081 8082}"
PG_PORT="${PG_PORT:-55432}"
WORK="${WORK:-$(mktemp -d -t hipper-scale-XXXXXX)}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
KAMAILIO="${KAMAILIO:-/usr/sbin/kamailio}"

# initdb refuses to run as root: the cluster belongs to the postgres user then.
AS_PG=()
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi

PIDS=()
cleanup() {
    # A second signal (`timeout` or a terminal sends one to the whole process group) must not cut cleaning short.
    trap '' INT TERM
    trap - EXIT
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/pg" "$WORK/shared" "$WORK/kamailio"
chmod 755 "$WORK"
[ ${#AS_PG[@]} -eq 0 ] || chown -R postgres "$WORK/pg"
echo "work directory: $WORK"

# 1. PostgreSQL: the one shared store (registrations, settings, who is on a call, the outbox).
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres -E UTF8 --no-sync >"$WORK/initdb.log"
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg/log" \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || { cat "$WORK/pg/log"; exit 1; }
"${AS_PG[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hipper
export HIPPER_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/hipper"
# Voicemails, greetings and recordings: one directory every node reads (on several machines: NFS or the like).
export HIPPER_DATA_DIR="$WORK/shared"
export HIPPER_SIP_REALM="${HIPPER_SIP_REALM:-hipper.local}"
export HIPPER_SIP_TRUSTED_PROXIES='["127.0.0.1"]'
export HIPPER_SIP_TCP=false

# 2. Demo data (users, phones) through the first node's configuration: the database is migrated on the way.
"$HIPPER" demo --no-serve | sed -e "s/registrar [0-9.:]*/registrar 127.0.0.1:$EDGE_PORT (the edge)/"

# 3. The nodes, one after the other (the first creates the shared files, e.g. the Web Push key).
: >"$WORK/kamailio/nodes.list"
for i in "${!SIP_PORTS[@]}"; do
    n=$((i + 1))
    rtp=$((${RTP_PORT_BASE:-40000} + i * 2000))
    HIPPER_NODE_ID="node-$n" HIPPER_SIP_NODE="node-$n" HIPPER_SIP_PORT="${SIP_PORTS[$i]}" \
        HIPPER_HTTP_PORT="${HTTP_PORTS[$i]}" HIPPER_RTP_PORT_MIN="$rtp" HIPPER_RTP_PORT_MAX="$((rtp + 1998))" \
        "$HIPPER" serve >"$WORK/node-$n.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do
        curl -fs "http://127.0.0.1:${HTTP_PORTS[$i]}/api/v1/health" >/dev/null 2>&1 && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/node-$n.log"; exit 1; }
        sleep 0.1
    done
    echo "node-$n: SIP 127.0.0.1:${SIP_PORTS[$i]}, API http://127.0.0.1:${HTTP_PORTS[$i]}/ (log $WORK/node-$n.log)"
    echo "1 sip:127.0.0.1:${SIP_PORTS[$i]} 9" >>"$WORK/kamailio/nodes.list"
done

# 4. The edge: dispatcher over the nodes, probing them with OPTIONS every second.
"$KAMAILIO" -DD -E -f "$ROOT/deploy/kamailio/kamailio.cfg" -Y "$WORK/kamailio" -P "$WORK/kamailio/pid" \
    -A "LISTEN=udp:127.0.0.1:$EDGE_PORT" -A "DISPATCHER_LIST=\"$WORK/kamailio/nodes.list\"" \
    -A "CTL_SOCKET=\"unix:$WORK/kamailio/ctl\"" -A "CHILDREN=2" >"$WORK/kamailio.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    [ "$(grep -c 'hipper-edge: node up' "$WORK/kamailio.log" || true)" -ge "${#SIP_PORTS[@]}" ] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/kamailio.log"; exit 1; }
    sleep 0.1
done
echo "edge: Kamailio on udp:127.0.0.1:$EDGE_PORT (log $WORK/kamailio.log); $(grep -c 'hipper-edge: node up' "$WORK/kamailio.log") nodes up"
echo "ready: point phones at 127.0.0.1:$EDGE_PORT; Ctrl-C stops everything"
wait -n "${PIDS[@]}"
