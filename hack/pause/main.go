// Command pause is the test bed's pod sandbox process: it holds the pod's namespaces open,
// reaps orphans re-parented to it (it is PID 1 of a shared PID namespace) and exits 0 on
// SIGTERM or SIGINT, which is how the runtime stops a sandbox politely.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Several exits can collapse into one SIGCHLD, so reap until nothing is left.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
