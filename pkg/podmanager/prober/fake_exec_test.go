package prober

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// execCall is one ExecSync the fake received.
type execCall struct {
	id      string
	cmd     []string
	timeout time.Duration
}

// execReply is what the fake answers; block waits for the caller's context instead.
type execReply struct {
	code   int32
	stdout string
	stderr string
	err    error
	block  bool
}

var (
	pass = execReply{}
	fail = execReply{code: 1, stdout: "boom"}
)

// fakeExec answers ExecSync from a script per command name (cmd[0]); the last reply of a
// script repeats, and a command without a script passes. Every call is recorded in calls.
type fakeExec struct {
	mu       sync.Mutex
	replies  map[string][]execReply // guarded by mu
	calls    chan execCall
	returned atomic.Int32 // calls that have returned
}

func newFakeExec() *fakeExec {
	return &fakeExec{replies: map[string][]execReply{}, calls: make(chan execCall, 1000)}
}

func (f *fakeExec) script(cmd string, replies ...execReply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[cmd] = replies
}

func (f *fakeExec) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error) {
	defer f.returned.Add(1)
	f.calls <- execCall{id: id, cmd: cmd, timeout: timeout}
	f.mu.Lock()
	r := pass
	if s := f.replies[cmd[0]]; len(s) > 0 {
		r = s[0]
		if len(s) > 1 {
			f.replies[cmd[0]] = s[1:]
		}
	}
	f.mu.Unlock()
	if r.block {
		<-ctx.Done()
		return nil, nil, 0, ctx.Err()
	}
	return []byte(r.stdout), []byte(r.stderr), r.code, r.err
}
