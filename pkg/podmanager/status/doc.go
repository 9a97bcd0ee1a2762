// Package status holds the latest computed status of every pod the agent runs. Pod workers
// write it (each only its own pod); readers (the debug server, later the API server
// reporter) take copies. Each change bumps a per-pod version, so a reporter can send only
// what changed since it last looked.
package status
