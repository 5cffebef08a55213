#!/usr/bin/env bash
# iperf3 between two pods with no programs attached, with the agent
# enforcing an allow policy, and with no programs again.
#   sudo bench/throughput.sh                 # 10 s runs, 3 of each
#   sudo bench/throughput.sh -duration 2s -reps 1
source "$(dirname "$0")/lib.sh"
command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3; }
run_agentbench throughput "$@"
