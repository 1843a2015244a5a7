#!/usr/bin/env bash
# Checks the alerting config: rule syntax, rule unit tests, Alertmanager
# config and its routing. Run from anywhere; CI calls it. Needs promtool
# (Prometheus) and amtool (Alertmanager) on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

for tool in promtool amtool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: $tool not found on PATH" >&2
        exit 1
    fi
done

echo "== promtool check rules"
promtool check rules anteroom.rules.yml

echo "== promtool test rules"
promtool test rules tests/*.yml

echo "== amtool check-config"
amtool check-config alertmanager.yml

echo "== amtool routing"
# severity -> receiver the route tree must pick.
route() {
    local want=$1
    shift
    if ! amtool config routes test --config.file=alertmanager.yml \
        --verify.receivers="$want" "$@" 2>/dev/null >/dev/null; then
        echo "routing: {$*} should go to $want" >&2
        exit 1
    fi
    echo "  {$*} -> $want"
}
route pager alertname=AnteroomDown job=anteroom severity=P0 team=anteroom
route pager alertname=AnteroomQueueStalled job=anteroom show=1 severity=P0 team=anteroom
route pager alertname=AnteroomRedisErrors job=anteroom severity=P1 team=anteroom
route chat alertname=AnteroomKafkaConsumerLag job=anteroom severity=P2 team=anteroom
route chat alertname=Unlabelled job=anteroom

echo "alerts: all checks passed"
