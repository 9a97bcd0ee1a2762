// Command nodeagent-cni is nodeagent's CNI delegate as a binary of its own: containerd runs it
// as the node's only CNI plugin, and it forwards each call to the running agent over the
// agent's socket (pkg/network, DESIGN.md decision 5).
//
// The nodeagent binary does the same when run with CNI_COMMAND set; this one exists because
// it starts in about 2 ms instead of 5 (it links the delegate only, not the Kubernetes API
// types, gRPC and protobuf registrations whose package initialisation the agent pays), and the
// delegate runs on every pod sandbox start and stop. deploy/ and the test bed install it.
package main

import (
	"fmt"
	"os"

	"github.com/nodeagent/nodeagent/pkg/network"
)

func main() {
	if os.Getenv("CNI_COMMAND") == "" {
		fmt.Fprintln(os.Stderr, "nodeagent-cni is a CNI plugin: containerd runs it with CNI_COMMAND set; see nodeagent --help for the agent")
		os.Exit(2)
	}
	os.Exit(network.RunDelegate(os.Environ(), os.Stdin, os.Stdout))
}
