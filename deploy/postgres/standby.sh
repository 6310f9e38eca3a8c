#!/bin/bash
# The standby: on its first start a base backup of the primary (-R: standby.signal and
# primary_conninfo written), then PostgreSQL streams from it. Promote it when the primary is lost:
#   docker compose exec -u postgres postgres-standby pg_ctl promote -D /var/lib/postgresql/data
set -euo pipefail
DATA=/var/lib/postgresql/data
if [ ! -s "$DATA/PG_VERSION" ]; then
  until pg_basebackup -h postgres -p 5432 -U replicator -D "$DATA" -R -X stream; do
    echo "waiting for the primary"; rm -rf "${DATA:?}"/*; sleep 2
  done
  chmod 700 "$DATA"
fi
exec postgres -D "$DATA"
