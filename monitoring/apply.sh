#!/usr/bin/env bash
# Creates or updates the stripe-orders log-based metrics and alert policies in one Google Cloud project.
# Safe to run again: an existing metric is updated from its file, an existing policy (same displayName)
# is replaced from its file and keeps its notification channels.
#
#   monitoring/apply.sh PROJECT_ID
#   NOTIFICATION_CHANNELS=projects/P/notificationChannels/123,projects/P/notificationChannels/456 monitoring/apply.sh PROJECT_ID
#
# NOTIFICATION_CHANNELS (optional, comma-separated channel resource names, see
# `gcloud beta monitoring channels list --project PROJECT_ID`): set on every policy. When unset,
# new policies get no channel and existing ones keep theirs.
# Needs: gcloud with the alpha component, logged in with roles/logging.configWriter and
# roles/monitoring.alertPolicyEditor (or owner/editor) on the project.
set -euo pipefail

usage() {
  echo "usage: $0 PROJECT_ID   (optional env: NOTIFICATION_CHANNELS=comma-separated channel resource names)" >&2
  exit 2
}

[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || usage
PROJECT_ID="$1"
CHANNELS="${NOTIFICATION_CHANNELS:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

command -v gcloud >/dev/null 2>&1 || {
  echo "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)." >&2
  exit 1
}

# A policy that names a just-created log-based metric can be refused for a short while, until the
# metric's descriptor is visible to Cloud Monitoring: retry a few times before giving up.
retry() {
  local attempt=1 max=6 delay=10
  until "$@"; do
    if ((attempt >= max)); then
      echo "failed after $max attempts: $*" >&2
      return 1
    fi
    echo "retrying in ${delay}s (attempt $attempt of $max failed)" >&2
    sleep "$delay"
    attempt=$((attempt + 1))
  done
}

apply_metric() {
  local file="$1" name
  name="$(basename "$file" .yaml)"
  if gcloud logging metrics describe "$name" --project="$PROJECT_ID" --format="value(name)" >/dev/null 2>&1; then
    echo "metric $name: updating"
    gcloud logging metrics update "$name" --project="$PROJECT_ID" --config-from-file="$file" --quiet >/dev/null
  else
    echo "metric $name: creating"
    gcloud logging metrics create "$name" --project="$PROJECT_ID" --config-from-file="$file" --quiet >/dev/null
  fi
}

# The policy's own top-level displayName (2-space indented in our files); it is the idempotency key.
policy_display_name() {
  sed -n 's/^  "displayName": "\(.*\)",\{0,1\}$/\1/p' "$1" | head -n 1
}

apply_policy() {
  local file="$1" display existing keep
  display="$(policy_display_name "$file")"
  if [[ -z "$display" ]]; then
    echo "$file: no top-level \"displayName\" found" >&2
    return 1
  fi
  existing="$(gcloud alpha monitoring policies list --project="$PROJECT_ID" \
    --filter="displayName=\"$display\"" --format="value(name)")"
  if [[ -z "$existing" ]]; then
    echo "policy \"$display\": creating"
    local args=(--project="$PROJECT_ID" --policy-from-file="$file" --quiet)
    [[ -n "$CHANNELS" ]] && args+=(--notification-channels="$CHANNELS")
    retry gcloud alpha monitoring policies create "${args[@]}" >/dev/null
    return
  fi
  if [[ "$(wc -l <<<"$existing")" -gt 1 ]]; then
    echo "policy \"$display\": several policies have this displayName; delete the extra ones first:" >&2
    echo "$existing" >&2
    return 1
  fi
  echo "policy \"$display\": updating $existing"
  # Replacing a policy from a file drops its channels unless they are set again.
  keep="$CHANNELS"
  if [[ -z "$keep" ]]; then
    keep="$(gcloud alpha monitoring policies describe "$existing" --project="$PROJECT_ID" \
      --format="value(notificationChannels.list())")"
  fi
  local args=(--project="$PROJECT_ID" --policy-from-file="$file" --quiet)
  [[ -n "$keep" ]] && args+=(--set-notification-channels="$keep")
  retry gcloud alpha monitoring policies update "$existing" "${args[@]}" >/dev/null
}

shopt -s nullglob
metrics=("$HERE"/metrics/*.yaml)
policies=("$HERE"/policies/*.json)
((${#metrics[@]} > 0)) || { echo "no metric files in $HERE/metrics" >&2; exit 1; }

for file in "${metrics[@]}"; do apply_metric "$file"; done
for file in "${policies[@]}"; do apply_policy "$file"; done
echo "done: ${#metrics[@]} log-based metrics and ${#policies[@]} alert policies in project $PROJECT_ID"
