#!/usr/bin/env bash
# The agent's memory with 10,000 TrafficPolicies (100 namespaces × 100),
# 50 local and 1,000 remote pods, and the time to realise them.
#   sudo bench/agent-memory.sh
#   sudo bench/agent-memory.sh -namespaces 10 -per-namespace 10 -local-pods 5 -remote-pods 50
source "$(dirname "$0")/lib.sh"
run_agentbench memory "$@"
