package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// The delegate protocol. containerd runs the nodeagent binary as its only CNI plugin; that
// process (RunDelegate) forwards the call to the running agent (ServeDelegate) over a unix
// socket and prints the agent's answer as its own. One connection carries one call: the
// delegate writes a Request as JSON and half-closes, the agent answers with one Response and
// closes. No framing, no keep-alive: a plugin process lives for one call anyway.

// CNI commands the delegate knows.
const (
	CommandAdd     = "ADD"
	CommandDel     = "DEL"
	CommandCheck   = "CHECK"
	CommandGC      = "GC"
	CommandStatus  = "STATUS"
	CommandVersion = "VERSION"
)

// delegateVersions are the spec versions the delegate accepts from containerd. The agent
// converts its list's result to the version containerd asked for, which works from 0.3.0 on
// (older results have no interfaces list).
var delegateVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// delegateDialTimeout bounds only the connect: an agent that is down fails fast, while the call
// itself may legitimately take as long as the plugins do (containerd's own timeout governs it).
const delegateDialTimeout = 5 * time.Second

// delegateCallTimeout bounds one forwarded call in the agent. containerd's own CNI timeout
// is usually shorter; the agent still finishes the call so nothing is left half done.
const delegateCallTimeout = 2 * time.Minute

// delegateReadTimeout bounds how long the agent waits for a connected delegate to send its
// request, so a stuck client cannot hold a connection forever.
const delegateReadTimeout = 10 * time.Second

// Request is one CNI call as containerd made it to the delegate.
type Request struct {
	Command     string `json:"command"`
	ContainerID string `json:"containerID,omitempty"`
	NetNS       string `json:"netns,omitempty"`
	IfName      string `json:"ifName,omitempty"`
	// Args is CNI_ARGS verbatim ("K=V;K=V"): containerd puts the pod's name, namespace and
	// UID there.
	Args string `json:"args,omitempty"`
	Path string `json:"path,omitempty"`
	// StdinData is the network config containerd passed, including the runtimeConfig it
	// filled from the pod (portMappings, bandwidth) and its cniVersion.
	StdinData json.RawMessage `json:"stdinData,omitempty"`
}

// Response is the agent's answer: the result JSON to print, or a CNI error.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *types.Error    `json:"error,omitempty"`
}

// DelegateHandler runs one forwarded call. It returns the bytes the delegate prints on success
// (the result for ADD, nothing for DEL/CHECK/GC/STATUS). An error that is or wraps a
// *types.Error keeps its code; any other error is reported as code 999 (internal).
type DelegateHandler func(ctx context.Context, req Request) (result []byte, err error)

// ListenDelegate creates the agent's delegate socket at path, readable and writable by its
// owner only: whoever can connect can attach and detach pods. The socket is made under a
// temporary name, chmodded, then renamed into place, so it never exists at path with wider
// permissions. A stale socket from a previous run is replaced.
func ListenDelegate(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("delegate socket dir for %s: %w", path, err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on delegate socket %s: %w", path, err)
	}
	// The listener would unlink tmp on Close; after the rename that name is gone, and the
	// real path is ours to remove.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("restrict delegate socket %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("move delegate socket into place at %s: %w", path, err)
	}
	return &unlinkListener{Listener: l, path: path}, nil
}

// unlinkListener removes the socket file on Close, so a stopped agent leaves no socket that a
// delegate would dial only to get "connection refused" rather than "no such file".
type unlinkListener struct {
	net.Listener
	path string
	once sync.Once
}

func (l *unlinkListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// ServeDelegate answers delegate calls on l until ctx is cancelled, then closes l and waits
// for the calls in flight. Each call runs in its own goroutine, so a slow ADD never holds up a
// DEL for another pod. A call in flight is not cancelled with ctx: a plugin killed halfway
// through a DEL leaves the address and the iptables rules behind, so an agent that is
// stopping finishes what it started, each call bounded by delegateCallTimeout. It returns nil
// after a cancel, or the accept error that stopped it.
func ServeDelegate(ctx context.Context, l net.Listener, handler DelegateHandler) error {
	var wg sync.WaitGroup
	defer wg.Wait()

	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return fmt.Errorf("accept delegate connection: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), delegateCallTimeout)
			defer cancel()
			serveDelegateConn(callCtx, conn, handler)
		}()
	}
}

func serveDelegateConn(ctx context.Context, conn net.Conn, handler DelegateHandler) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(delegateReadTimeout))
	var req Request
	var resp Response
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		resp.Error = types.NewError(types.ErrDecodingFailure, "nodeagent could not decode the delegate request", err.Error())
	} else {
		_ = conn.SetReadDeadline(time.Time{})
		result, err := handler(ctx, req)
		if err != nil {
			resp.Error = toCNIError(err)
		} else if len(result) > 0 {
			resp.Result = result
		}
	}
	// The delegate may be gone (containerd killed it on timeout); nothing to do then.
	_ = json.NewEncoder(conn).Encode(&resp)
}

// toCNIError keeps a plugin's code through the agent's wrapping, with the full message so the
// user sees which network and sandbox it was about.
func toCNIError(err error) *types.Error {
	var ce *types.Error
	if errors.As(err, &ce) {
		return &types.Error{Code: ce.Code, Msg: err.Error(), Details: ce.Details}
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// DefaultSocket is where the agent listens for the delegate when neither the agent's flags nor
// the delegate's config say otherwise.
const DefaultSocket = "/run/nodeagent/cni.sock"

// DelegateConf is what the delegate reads from the plugin config containerd passes it (its
// entry in containerd's conflist), besides the standard keys.
type DelegateConf struct {
	CNIVersion string `json:"cniVersion"`
	// Socket is the agent's socket; empty means DefaultSocket.
	Socket string `json:"socket,omitempty"`
	// SocketDir, instead of Socket, is a directory of agent sockets (*.sock) tried in name
	// order until one answers: several agents sharing one containerd, as on the test bed. Any
	// of them can serve any pod, because they share StateDir.
	SocketDir string `json:"socketDir,omitempty"`
	// StateDir is the node network's state directory (see state.go), for a DEL the delegate
	// has to run itself; empty means DefaultStateDir.
	StateDir string `json:"stateDir,omitempty"`
}

// RunDelegate is the plugin side, run when containerd starts the nodeagent binary as a CNI
// plugin (CNI_COMMAND is set). It forwards the call to the agent named by the config on stdin
// (DelegateConf) and prints the answer on stdout, returning the process exit code.
//
// VERSION is answered locally so containerd can load its config before the agent runs. When
// the agent cannot be reached, ADD and CHECK fail with a CNI error saying so (code 11, try
// again later) and STATUS with code 50 (plugin not available), which is what makes containerd
// report the network as not ready. DEL runs the node's list itself from the state directory,
// while the netns still exists: the address, the masquerade rule and the hostPort rules are
// released, and the sandbox can be removed (crictl rmp works with the agent stopped). GC at
// the agent's start is the backstop for a DEL that never comes.
func RunDelegate(env []string, stdin io.Reader, stdout io.Writer) int {
	return runDelegateWith(env, stdin, stdout, RunnerOptions{})
}

// runDelegateWith is RunDelegate with the options of the runner a DEL without the agent uses
// (tests pass fakes for the plugins and the host commands).
func runDelegateWith(env []string, stdin io.Reader, stdout io.Writer, opts RunnerOptions) int {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	stdinData, err := io.ReadAll(stdin)
	if err != nil {
		return printCNIError(stdout, "", types.NewError(types.ErrIOFailure, "nodeagent delegate could not read its config from stdin", err.Error()))
	}
	confVersion := configVersion(stdinData)

	req := Request{
		Command:     vars["CNI_COMMAND"],
		ContainerID: vars["CNI_CONTAINERID"],
		NetNS:       vars["CNI_NETNS"],
		IfName:      vars["CNI_IFNAME"],
		Args:        vars["CNI_ARGS"],
		Path:        vars["CNI_PATH"],
		StdinData:   stdinData,
	}
	if cerr := checkRequest(req); cerr != nil {
		return printCNIError(stdout, confVersion, cerr)
	}
	if req.Command == CommandVersion {
		if err := delegateVersions.Encode(stdout); err != nil {
			return 1
		}
		return 0
	}
	if !json.Valid(stdinData) {
		return printCNIError(stdout, confVersion, types.NewError(types.ErrDecodingFailure, "nodeagent delegate: the network config on stdin is not JSON", ""))
	}

	var conf DelegateConf
	_ = json.Unmarshal(stdinData, &conf) // valid JSON; a wrongly typed key just stays default
	resp, err := callAgent(req, conf)
	if err != nil {
		if req.Command == CommandDel {
			if derr := delWithoutAgent(req, conf, opts); derr != nil {
				return printCNIError(stdout, confVersion, types.NewError(types.ErrTryAgainLater,
					fmt.Sprintf("%v, and the delegate's own DEL failed: %v", err, derr), ""))
			}
			return 0
		}
		code := types.ErrTryAgainLater
		if req.Command == CommandStatus {
			code = types.ErrPluginNotAvailable
		}
		return printCNIError(stdout, confVersion, types.NewError(code, err.Error(), ""))
	}
	if resp.Error != nil {
		return printCNIError(stdout, confVersion, resp.Error)
	}
	if len(resp.Result) > 0 {
		if _, err := stdout.Write(append(resp.Result, '\n')); err != nil {
			return 1
		}
	}
	return 0
}

// checkRequest applies the spec's environment rules before bothering the agent, with the
// error code the spec assigns (4, invalid environment variables).
func checkRequest(req Request) *types.Error {
	bad := func(msg string) *types.Error {
		return types.NewError(types.ErrInvalidEnvironmentVariables, msg, "")
	}
	switch req.Command {
	case CommandVersion, CommandGC, CommandStatus:
		return nil
	case CommandAdd, CommandCheck:
		if req.NetNS == "" {
			return bad("CNI_NETNS is required for " + req.Command)
		}
	case CommandDel:
	case "":
		return bad("CNI_COMMAND is not set")
	default:
		return bad(fmt.Sprintf("unknown CNI_COMMAND %q", req.Command))
	}
	if req.ContainerID == "" {
		return bad("CNI_CONTAINERID is required for " + req.Command)
	}
	if req.IfName == "" {
		return bad("CNI_IFNAME is required for " + req.Command)
	}
	return nil
}

// callAgent sends req to the first agent socket that accepts a connection.
func callAgent(req Request, conf DelegateConf) (*Response, error) {
	var sockets []string
	switch {
	case conf.Socket != "":
		sockets = []string{conf.Socket}
	case conf.SocketDir != "":
		matches, err := filepath.Glob(filepath.Join(conf.SocketDir, "*.sock"))
		if err != nil || len(matches) == 0 {
			return nil, fmt.Errorf("nodeagent is not reachable: no agent socket in %s", conf.SocketDir)
		}
		sockets = matches // Glob sorts
	default:
		sockets = []string{DefaultSocket}
	}
	var errs []string
	for _, s := range sockets {
		conn, err := net.DialTimeout("unix", s, delegateDialTimeout)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		resp, err := exchange(conn, req)
		if err != nil {
			return nil, fmt.Errorf("nodeagent at %s did not answer: %w", s, err)
		}
		return resp, nil
	}
	return nil, fmt.Errorf("nodeagent is not reachable: %s", strings.Join(errs, "; "))
}

// exchange sends one request on conn and reads the answer.
func exchange(conn net.Conn, req Request) (*Response, error) {
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		// The agent died or restarted mid-call: as unreachable as never having answered.
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &resp, nil
}

// delWithoutAgent runs the DEL with the list the agent saved in the state directory. With no
// saved list the agent never ran with this state directory, so it never attached anything
// there and there is nothing to release.
func delWithoutAgent(req Request, conf DelegateConf, opts RunnerOptions) error {
	stateDir := conf.StateDir
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	n, err := LoadSavedNetwork(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	opts.LockFile, opts.AttachmentDir = LockFile(stateDir), AttachmentDir(stateDir)
	r, err := NewRunner(n, CacheDir(stateDir), opts)
	if err != nil {
		return err
	}
	a, err := AttachmentFromRequest(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), delegateCallTimeout)
	defer cancel()
	return r.Del(ctx, a)
}

// printCNIError writes the error the way the spec wants it on stdout, with the cniVersion of
// the config it was called with, and returns the exit code for a failed call.
func printCNIError(w io.Writer, cniVersion string, e *types.Error) int {
	if cniVersion == "" {
		cniVersion = version.Current()
	}
	out := struct {
		CNIVersion string `json:"cniVersion"`
		Code       uint   `json:"code"`
		Msg        string `json:"msg"`
		Details    string `json:"details,omitempty"`
	}{cniVersion, e.Code, e.Msg, e.Details}
	b, _ := json.Marshal(out)
	_, _ = w.Write(append(b, '\n'))
	return 1
}

// configVersion reads cniVersion from the config containerd passed, "" if there is none.
func configVersion(stdinData []byte) string {
	var c struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(stdinData, &c) != nil {
		return ""
	}
	return c.CNIVersion
}
