#!/usr/bin/env bash
# One agent's view of a large cluster: ipcache size, memory and the time
# from a remote pod's creation to its ipcache entry, with 1,000 remote
# pods by default (Pod objects on other nodes only).
#   sudo bench/agent-remote.sh
#   sudo bench/agent-remote.sh -remote-pods 10000 -samples 200
source "$(dirname "$0")/lib.sh"
run_agentbench remote "$@"
