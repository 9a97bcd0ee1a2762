// Package agentdebug reads a running nodeagent the way a person would: its debug endpoint's
// /pods and the end of its log. The bench and the chaos program share it.
package agentdebug

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Get sends GET path to the debug endpoint at addr (host:port) and returns the status and body.
func Get(addr, path string) (int, []byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Pods is the agent's own view of its pods, GET /pods.
func Pods(addr string) ([]v1.Pod, error) {
	code, body, err := Get(addr, "/pods")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/pods: HTTP %d: %s", code, body)
	}
	var list v1.PodList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("/pods: %w", err)
	}
	return list.Items, nil
}

// Tail is the last lines of the log at path, for error messages (the error's text if unreadable).
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "\n" + strings.Join(all, "\n")
}
