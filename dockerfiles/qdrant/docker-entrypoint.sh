#!/bin/sh
# The official qdrant image's interface, for a server binary omnilab copied in:
# - options as first argument mean `/qdrant/qdrant ...`;
# - started as root, it hands the storage and snapshots folders (a tmpfs, a volume or a
#   host folder mounted there) to the qdrant user and drops to it.
set -e

if [ "${1#-}" != "$1" ]; then
    set -- /qdrant/qdrant "$@"
fi

if [ "$1" = /qdrant/qdrant ] && [ "$(id -u)" = 0 ]; then
    for dir in /qdrant/storage /qdrant/snapshots; do
        find "$dir" \! -user qdrant -exec chown qdrant:qdrant '{}' +
    done
    exec setpriv --reuid=qdrant --regid=qdrant --init-groups "$0" "$@"
fi

umask 0077
exec "$@"
