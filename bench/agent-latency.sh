#!/usr/bin/env bash
# Time from a policy change, and from a pod addition or removal, to the
# pinned BPF maps holding the result: p50, p99 and max.
#   sudo bench/agent-latency.sh                      # 1,000 of each
#   sudo bench/agent-latency.sh -changes 20 -pod-changes 20
source "$(dirname "$0")/lib.sh"
run_agentbench latency "$@"
