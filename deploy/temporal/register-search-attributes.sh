#!/bin/sh
# Registers opsflow's custom search attributes (search-attributes.txt beside
# this script) in one Temporal namespace. Idempotent: re-creating an attribute
# with the same type succeeds, so it is safe to run on every deploy. Retries
# until the frontend and the namespace answer; fails at once if an attribute
# already exists with a different type (Temporal cannot change a type).
#
# Runs in temporalio/admin-tools (POSIX sh + the `temporal` CLI).
# Environment:
#   TEMPORAL_ADDRESS         frontend host:port (read by the CLI itself)
#   TEMPORAL_NAMESPACE       namespace to register in (default: default)
#   SEARCH_ATTRIBUTES_FILE   the list (default: search-attributes.txt beside this script)
#   ATTEMPTS, SLEEP_SECONDS  retry budget (default: 90 attempts, 2 s apart)
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must be set (host:port of the Temporal frontend)}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
FILE="${SEARCH_ATTRIBUTES_FILE:-$(dirname "$0")/search-attributes.txt}"
ATTEMPTS="${ATTEMPTS:-90}"
SLEEP_SECONDS="${SLEEP_SECONDS:-2}"

log() { echo "register-search-attributes: $*"; }

[ -r "$FILE" ] || { log "cannot read $FILE"; exit 1; }

# Wait for the frontend and the namespace (auto-setup or the operator creates it).
i=0
until temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge "$ATTEMPTS" ]; then
    log "namespace $NAMESPACE not reachable at $TEMPORAL_ADDRESS after $i attempts"
    exit 1
  fi
  log "waiting for namespace $NAMESPACE at $TEMPORAL_ADDRESS ($i/$ATTEMPTS)"
  sleep "$SLEEP_SECONDS"
done

# existing_type NAME: the registered type of NAME, empty when absent.
existing_type() {
  temporal operator search-attribute list --namespace "$NAMESPACE" 2>/dev/null |
    awk -v n="$1" '$1 == n { print $2 }'
}

count=0
while IFS= read -r line || [ -n "$line" ]; do
  line=$(printf '%s' "$line" | sed 's/#.*//; s/[[:space:]]//g')
  [ -n "$line" ] || continue
  name=${line%%=*}
  type=${line#*=}
  if [ -z "$name" ] || [ -z "$type" ] || [ "$name" = "$line" ]; then
    log "bad line in $FILE: '$line' (want NAME=TYPE)"
    exit 1
  fi
  i=0
  while :; do
    have=$(existing_type "$name")
    if [ -n "$have" ]; then
      if [ "$(printf '%s' "$have" | tr '[:upper:]' '[:lower:]')" = "$(printf '%s' "$type" | tr '[:upper:]' '[:lower:]')" ]; then
        log "$name ($have) present in namespace $NAMESPACE"
        break
      fi
      log "$name already exists with type $have, wanted $type: fix search-attributes.txt or workflows/api.go"
      exit 1
    fi
    if temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"; then
      log "$name ($type) created in namespace $NAMESPACE"
      # Loop once more: the list confirms it (and catches a concurrent run).
    fi
    i=$((i + 1))
    if [ "$i" -ge "$ATTEMPTS" ]; then
      log "could not register $name after $i attempts"
      exit 1
    fi
    sleep "$SLEEP_SECONDS"
  done
  count=$((count + 1))
done < "$FILE"

log "$count search attribute(s) registered in namespace $NAMESPACE"
