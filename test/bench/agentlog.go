package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// agentLog follows an agent's JSON log file (--log-format json) as it grows.
type agentLog struct {
	path    string
	off     int64
	partial []byte    // an unfinished last line, completed by the next read
	lines   []logLine // every JSON line so far, in order
	// coarse is set when a line's time has no fraction of a second: such a log cannot time
	// anything below a second.
	coarse bool
}

// logLine is one JSON log entry: its message, its own timestamp and its fields.
type logLine struct {
	msg    string
	time   time.Time
	fields map[string]any
}

func (l *logLine) str(key string) string {
	s, _ := l.fields[key].(string)
	return s
}

func newAgentLog(path string) *agentLog { return &agentLog{path: path} }

// refresh reads what was appended since the last call. Lines that are not JSON (a panic, a
// text-format log) are skipped.
func (l *agentLog) refresh() error {
	f, err := os.Open(l.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	l.off += int64(len(data))
	data = append(l.partial, data...)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		l.partial = data
		return nil
	}
	l.partial = append([]byte(nil), data[end+1:]...)
	for _, raw := range bytes.Split(data[:end], []byte("\n")) {
		var fields map[string]any
		if json.Unmarshal(raw, &fields) != nil {
			continue
		}
		line := logLine{fields: fields}
		line.msg, _ = fields["msg"].(string)
		ts, _ := fields["time"].(string)
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			line.time = t
			if !strings.Contains(ts, ".") {
				l.coarse = true
			}
		}
		l.lines = append(l.lines, line)
	}
	return nil
}

// runtimeEvent returns the first "runtime event" line for the container and event, reading
// the log until it appears or timeout passes.
func (l *agentLog) runtimeEvent(ctx context.Context, containerID, event string, timeout time.Duration) (*logLine, error) {
	var found *logLine
	err := poll(ctx, timeout, pollInterval, func() (bool, error) {
		if err := l.refresh(); err != nil {
			return false, err
		}
		for i := range l.lines {
			ln := &l.lines[i]
			if ln.msg == "runtime event" && ln.str("event") == event &&
				trimRuntimePrefix(ln.str("containerID")) == containerID {
				found = ln
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no %q runtime event for container %s in the agent log: %w", event, containerID, err)
	}
	return found, nil
}

// firstAfter returns the first line with msg at or after t, or nil.
func (l *agentLog) firstAfter(msg string, t time.Time) *logLine {
	for i := range l.lines {
		if l.lines[i].msg == msg && !l.lines[i].time.Before(t) {
			return &l.lines[i]
		}
	}
	return nil
}

// trimRuntimePrefix turns "containerd://<id>" into "<id>".
func trimRuntimePrefix(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		return after
	}
	return id
}
