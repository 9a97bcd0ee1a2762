package network

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// fakeExec stands in for the plugin binaries at libcni's invoke.Exec seam. Binaries are
// still looked up for real (in a fakeBinDir), so lookup failures behave as on a node. bridge
// answers ADD with a fixed address; the chained plugins pass their prevResult through, as the
// real ones do.
type fakeExec struct {
	mu    sync.Mutex
	calls []execCall
	// fail makes "<plugin> <COMMAND>" return the error; failOnce only the next time.
	fail, failOnce map[string]error
	// onExec, when set, sees every call with its context before it is answered.
	onExec func(ctx context.Context, c execCall)
	// gate, when set, holds every ADD, DEL and CHECK until it yields; running and
	// maxRunning count the plugins held at once.
	gate                chan struct{}
	running, maxRunning int
}

type execCall struct {
	plugin, command string
	env             map[string]string
	stdin           map[string]any
}

func (c execCall) String() string { return c.plugin + " " + c.command }

const fakeBridgeResult = `{"cniVersion":"1.1.0",
 "interfaces":[{"name":"nodeagent0"},{"name":"veth1"},{"name":"eth0","sandbox":"/ns"}],
 "ips":[{"interface":2,"address":"10.88.0.2/16","gateway":"10.88.0.1"}],
 "routes":[{"dst":"0.0.0.0/0"}]}`

var _ invoke.Exec = (*fakeExec)(nil)

func (f *fakeExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	c := execCall{plugin: filepath.Base(pluginPath), env: map[string]string{}}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "CNI_") {
			c.env[k] = v
		}
	}
	c.command = c.env["CNI_COMMAND"]
	if err := json.Unmarshal(stdinData, &c.stdin); err != nil {
		return nil, fmt.Errorf("fake %s: stdin is not JSON: %w", c, err)
	}
	if f.onExec != nil {
		f.onExec(ctx, c)
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	err := f.fail[c.String()]
	if once := f.failOnce[c.String()]; once != nil {
		err = once
		delete(f.failOnce, c.String())
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if f.gate != nil && c.command != "VERSION" {
		f.mu.Lock()
		f.running++
		f.maxRunning = max(f.maxRunning, f.running)
		f.mu.Unlock()
		<-f.gate
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}
	switch c.command {
	case "VERSION":
		return []byte(`{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}`), nil
	case "ADD":
		if c.plugin == "bridge" {
			return []byte(fakeBridgeResult), nil
		}
		return json.Marshal(c.stdin["prevResult"])
	}
	return nil, nil
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (f *fakeExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(jsonBytes)
}

// take returns the calls so far and forgets them.
func (f *fakeExec) take() []execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func callNames(calls []execCall) string {
	s := make([]string, len(calls))
	for i, c := range calls {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}
