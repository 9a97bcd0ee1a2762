package main

import (
	"encoding/json"
	"fmt"
)

// benchContainer is the name of the only container of every pod the bench runs.
const benchContainer = "c"

// podManifest is a one-container pod as a user would write it. The grace period is 0 so
// removing a pod between samples does not wait for `sleep` (PID 1 ignores SIGTERM).
func podManifest(name, image string, command []string) string {
	cmd, _ := json.Marshal(command) // a JSON array is a YAML flow sequence
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    app: bench
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 0
  containers:
  - name: %s
    image: %s
    imagePullPolicy: IfNotPresent
    command: %s
`, name, benchContainer, image, cmd)
}

var (
	sleepCommand = []string{"sleep", "100000"}
	crashCommand = []string{"sh", "-c", "sleep 1; exit 1"}
)
