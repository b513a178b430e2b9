#!/bin/sh
# The official redis image's entrypoint, for Debian's redis-server:
# - a first argument that is an option or a .conf file means `redis-server ...`;
# - started as root, it hands /data to the redis user and drops to it;
# - protected mode is off unless a config file is given (the container's network is
#   the boundary; omnilab publishes ports on 127.0.0.1 only and sets a password).
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ]; then
    case "$2" in
        *.conf) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
fi

umask 0077
exec "$@"
