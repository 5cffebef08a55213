package main

import (
	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

// addSocketFlag adds --socket, the agent's API socket.
func addSocketFlag(cmd *cobra.Command, socket *string) {
	cmd.Flags().StringVar(socket, "socket", agentclient.DefaultSocket, "the agent's API socket (portcullis-agent --api-socket)")
}

// agentError is a failure to talk to the agent: an input error whose
// message names the socket and says whether the agent runs.
func agentError(err error) error {
	return inputErrorf("%v", err)
}
