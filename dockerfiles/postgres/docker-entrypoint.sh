#!/bin/sh
# The official postgres image's entrypoint, for Debian's PostgreSQL:
# - a first argument that is an option means `postgres ...`;
# - started as root, it hands $PGDATA to the postgres user and drops to it;
# - on an empty $PGDATA it runs initdb with POSTGRES_USER (default postgres) and
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), adds
#   POSTGRES_INITDB_ARGS, accepts connections from any address with
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), and creates POSTGRES_DB
#   (default: the user's name).
# Unlike the official image it creates the database in single-user mode instead of
# starting a temporary server (faster), and runs initdb with --no-sync. Scripts in
# /docker-entrypoint-initdb.d are not run.
set -eu

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set." >&2
        echo "       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust, which lets" >&2
        echo "       anyone who reaches the port connect without a password)." >&2
        exit 1
    fi
    pwopt=""
    pwfile=""
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        pwopt="--pwfile=$pwfile"
    fi
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
    initdb -D "$PGDATA" --username="$user" $pwopt --auth-local=trust \
        --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 --no-sync \
        ${POSTGRES_INITDB_ARGS:-}
    [ -z "$pwfile" ] || rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        ident=$(printf '%s' "$db" | sed 's/"/""/g')
        out=$(echo "CREATE DATABASE \"$ident\";" | postgres --single -D "$PGDATA" postgres 2>&1)
        if printf '%s' "$out" | grep -q 'ERROR'; then
            printf '%s\n' "$out" >&2
            exit 1
        fi
    fi
    echo "database initialized: user $user, database $db"
fi

unset POSTGRES_PASSWORD
exec "$@"
