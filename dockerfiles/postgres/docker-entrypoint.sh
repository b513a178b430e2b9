#!/bin/sh
# The official postgres image's entrypoint, for Debian's PostgreSQL:
# - a first argument that is an option means `postgres ...`;
# - started as root, it hands $PGDATA to the postgres user and drops to it;
# - on an empty $PGDATA it makes a cluster whose superuser is POSTGRES_USER (default
#   postgres) with POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   accepting connections from any address with POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256), and creates POSTGRES_DB (default: the user's name);
#   POSTGRES_INITDB_ARGS are passed to initdb.
# Unlike the official image:
# - with the default settings the cluster is a copy of one made when the image was
#   built (initdb is most of a start-up; a copy takes a fraction of it), then renamed and
#   given its password in single-user mode. Clusters made this way share their system
#   identifier, which only matters for physical replication. POSTGRES_INITDB_ARGS or
#   another auth method run initdb instead (with --no-sync);
# - the database is created in single-user mode, not through a temporary server, and
#   scripts in /docker-entrypoint-initdb.d are not run.
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

# Single-user mode, one statement per line on stdin; fails on any ERROR. Without fsync,
# like initdb --no-sync: the cluster is new, and its first start's checkpoint is cheap.
single() {
    out=$(postgres --single -D "$PGDATA" -c fsync=off postgres 2>&1) || true
    if printf '%s' "$out" | grep -q 'ERROR'; then
        # Not the statements themselves: one of them holds the password.
        printf '%s\n' "$out" | grep -v 'STATEMENT' >&2
        exit 1
    fi
}

ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    password="${POSTGRES_PASSWORD:-}"
    if [ -z "$password" ] && [ "$auth" != trust ]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set." >&2
        echo "       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust, which lets" >&2
        echo "       anyone who reaches the port connect without a password)." >&2
        exit 1
    fi
    newline='
'
    case "$password" in *"$newline"*) multiline=1 ;; *) multiline="" ;; esac
    if [ -d "$PG_TEMPLATE" ] && [ -z "${POSTGRES_INITDB_ARGS:-}" ] \
        && [ "$auth" = scram-sha-256 ] && [ -z "$multiline" ]; then
        cp -a "$PG_TEMPLATE/." "$PGDATA/"
        {
            # The bootstrap superuser (oid 10) takes POSTGRES_USER's name, as with
            # `initdb --username`: single-user mode cannot rename its own session user
            # with ALTER ROLE.
            if [ "$user" != postgres ]; then
                echo "UPDATE pg_authid SET rolname = $(literal "$user") WHERE oid = 10;"
            fi
            echo "ALTER ROLE $(ident "$user") PASSWORD $(literal "$password");"
            if [ "$db" != postgres ]; then
                echo "CREATE DATABASE $(ident "$db");"
            fi
        } | single
        echo "cluster copied from the image's template"
    else
        pwopt=""
        pwfile=""
        if [ -n "$password" ]; then
            pwfile=$(mktemp)
            printf '%s\n' "$password" > "$pwfile"
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
            echo "CREATE DATABASE $(ident "$db");" | single
        fi
    fi
    echo "database initialized: user $user, database $db"
fi

unset POSTGRES_PASSWORD
exec "$@"
