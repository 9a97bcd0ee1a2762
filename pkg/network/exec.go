package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec runs the plugin binaries for libcni (the invoke.Exec seam) as invoke.RawExec
// does, but ties every plugin to the call that runs it, so a call the agent can no longer
// finish ends instead of racing the DEL that follows it:
//
//   - Pdeathsig SIGKILL: a plugin dies with the process that started it. Without it a plugin
//     outlives a kill -9 of the agent and keeps installing iptables rules while containerd's
//     DEL (run by the delegate) removes them, leaving a hostPort DNAT to an address that is
//     handed to the next pod.
//   - The attachment's lock file (attachlock.go), when the call carries one, is inherited by
//     the plugin and by everything the plugin starts (host-local, iptables), which Pdeathsig
//     does not reach. The kernel releases the flock only when the last of them has exited, so
//     the next call for the attachment, in whatever process, waits for the whole tree.
//
// Pdeathsig fires when the thread that forked the child exits, not the process: the calling
// goroutine stays locked to its thread until the child has been waited for, so the Go
// runtime can never retire that thread under a running plugin. Waiting for a child holds a
// thread anyway, so this costs no extra thread (see DefaultMaxParallel).
type pluginExec struct {
	version.PluginDecoder
}

var _ invoke.Exec = (*pluginExec)(nil)

// inheritKey carries the *os.File a call's plugins inherit (withInherited).
type inheritKey struct{}

// withInherited makes every plugin run with ctx inherit f (as fd 3).
func withInherited(ctx context.Context, f *os.File) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, inheritKey{}, f)
}

func inherited(ctx context.Context) *os.File {
	f, _ := ctx.Value(inheritKey{}).(*os.File)
	return f
}

// textBusyRetries and textBusyWait are invoke.RawExec's: a plugin binary being replaced (an
// upgrade) fails exec with ETXTBSY for a moment.
const (
	textBusyRetries = 5
	textBusyWait    = time.Second
)

func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		err := runPlugin(ctx, pluginPath, stdinData, environ, &stdout, &stderr)
		if err == nil {
			break
		}
		if errors.Is(err, syscall.ETXTBSY) && attempt < textBusyRetries {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(textBusyWait):
			}
			continue
		}
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	// As libcni's default exec does: a plugin's diagnostics on success go to our stderr.
	if stderr.Len() > 0 {
		_, _ = stderr.WriteTo(os.Stderr)
	}
	return stdout.Bytes(), nil
}

func runPlugin(ctx context.Context, path string, stdin []byte, env []string, stdout, stderr *bytes.Buffer) error {
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if f := inherited(ctx); f != nil {
		cmd.ExtraFiles = []*os.File{f}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Run()
}

// pluginError is invoke.RawExec's reading of a failed plugin: the CNI error it printed, else
// what it wrote to stderr.
func pluginError(err error, stdout, stderr []byte) error {
	e := &types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
	default:
		if perr := json.Unmarshal(stdout, e); perr != nil {
			e.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
		}
	}
	return e
}

func (e *pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}
