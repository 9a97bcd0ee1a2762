package nodeapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// timestampFormat is how --timestamps prints a line's time: the kubelet's fixed-width
// RFC 3339, so columns line up.
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// logOptions are a containerLogs request's options, validated.
type logOptions struct {
	tail       int64     // < 0: every line; else the last tail lines
	since      time.Time // zero: from the first line
	limit      int64     // <= 0: no limit; else stop after this many bytes
	timestamps bool
	follow     bool
	stdout     bool
	stderr     bool
}

// logEntry is one line of a CRI log file, or several joined.
type logEntry struct {
	ts      time.Time
	stream  string // "stdout" or "stderr"
	text    []byte // without the newline
	partial bool   // tag P: the next entry of the same stream continues it
}

// parseLogLine parses "<RFC3339Nano> <stdout|stderr> <tags> <text>", tags being "F" or
// "P", possibly followed by ":"-separated others.
func parseLogLine(line []byte) (logEntry, error) {
	var e logEntry
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return e, fmt.Errorf("log line %q: no stream", truncate(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, fmt.Errorf("log line %q: timestamp: %v", truncate(line), err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return e, fmt.Errorf("log line %q: no stdout/stderr stream", truncate(line))
	}
	tags, text, _ := bytes.Cut(rest, []byte{' '})
	tag, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(tag) {
	case "F":
	case "P":
		e.partial = true
	default:
		return e, fmt.Errorf("log line %q: tag %q is not F or P", truncate(line), tag)
	}
	e.ts, e.stream, e.text = t, string(stream), text
	return e, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// errLimitReached ends a read that wrote limitBytes.
var errLimitReached = errors.New("limitBytes reached")

// follower is what following needs: whether the container still runs, and how to wait for
// more lines. Tests inject both.
type follower struct {
	// running reports whether the container can still write: once it says no, the file
	// is read to its end one last time and the stream ends.
	running func(ctx context.Context) bool
	// wait returns after a while, or with an error once ctx ends.
	wait func(ctx context.Context) error
	// checkEvery: running is asked every checkEvery waits (it costs a runtime call).
	checkEvery int
}

// logCopier turns the file's entries into the response: joins partial lines per stream,
// filters by stream and time, keeps the tail, prints timestamps, stops at the limit.
type logCopier struct {
	opts    logOptions
	w       io.Writer
	written int64
	pending map[string]*logEntry // stream -> partial line so far
	tailBuf []logEntry           // while reading what was there at the start; nil after
	tailing bool
	badLine func(error)
}

func (c *logCopier) add(e logEntry) error {
	if p := c.pending[e.stream]; p != nil {
		p.text = append(p.text, e.text...)
		if e.partial {
			return nil
		}
		e.ts, e.text = p.ts, p.text
		delete(c.pending, e.stream)
	} else if e.partial {
		e.text = append([]byte(nil), e.text...)
		c.pending[e.stream] = &e
		return nil
	}
	return c.emit(e, true)
}

func (c *logCopier) emit(e logEntry, newline bool) error {
	if (e.stream == "stdout" && !c.opts.stdout) || (e.stream == "stderr" && !c.opts.stderr) {
		return nil
	}
	if c.tailing {
		if c.opts.tail == 0 {
			return nil
		}
		if int64(len(c.tailBuf)) == c.opts.tail {
			copy(c.tailBuf, c.tailBuf[1:])
			c.tailBuf = c.tailBuf[:len(c.tailBuf)-1]
		}
		e.text = append([]byte(nil), e.text...) // the reader reuses its buffer
		c.tailBuf = append(c.tailBuf, e)
		return nil
	}
	if e.ts.Before(c.opts.since) {
		return nil
	}
	var out []byte
	if c.opts.timestamps {
		out = append(e.ts.AppendFormat(out, timestampFormat), ' ')
	}
	out = append(out, e.text...)
	if newline {
		out = append(out, '\n')
	}
	if c.opts.limit > 0 && c.written+int64(len(out)) >= c.opts.limit {
		out = out[:c.opts.limit-c.written]
		n, err := c.w.Write(out)
		c.written += int64(n)
		if err != nil {
			return err
		}
		return errLimitReached
	}
	n, err := c.w.Write(out)
	c.written += int64(n)
	return err
}

// endTail writes the kept tail; from then on lines are written as they come.
func (c *logCopier) endTail() error {
	if !c.tailing {
		return nil
	}
	c.tailing = false
	for _, e := range c.tailBuf {
		if err := c.emit(e, true); err != nil {
			return err
		}
	}
	c.tailBuf = nil
	return nil
}

// endPartials writes lines still waiting for their end, as they are, without a newline.
func (c *logCopier) endPartials() error {
	for _, s := range []string{"stdout", "stderr"} {
		if p := c.pending[s]; p != nil {
			delete(c.pending, s)
			if err := c.emit(*p, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// logFile reads the complete lines of a log file as they appear, across rotations.
type logFile struct {
	path  string
	f     *os.File
	r     *bufio.Reader
	carry []byte // a last line whose newline is not written yet
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

func (l *logFile) close() { l.f.Close() }

// readAvailable hands every complete line written so far to line.
func (l *logFile) readAvailable(line func([]byte) error) error {
	for {
		b, err := l.r.ReadSlice('\n')
		switch {
		case err == nil && len(l.carry) == 0:
			if lerr := line(b[:len(b)-1]); lerr != nil {
				return lerr
			}
		case err == nil:
			l.carry = append(l.carry, b[:len(b)-1]...)
			full := l.carry
			l.carry = nil
			if lerr := line(full); lerr != nil {
				return lerr
			}
		case errors.Is(err, bufio.ErrBufferFull):
			l.carry = append(l.carry, b...)
		case errors.Is(err, io.EOF):
			// ReadSlice clears EOF, so the next call sees what is written meanwhile.
			l.carry = append(l.carry, b...)
			return nil
		default:
			return err
		}
	}
}

// rotated reports whether the path now names another file than the one open (the log was
// rotated and the runtime reopened it); then it switches to the new file. Lines the old
// file got are read before the switch by the caller.
func (l *logFile) rotated() bool {
	cur, err := l.f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Stat(l.path)
	if err != nil || os.SameFile(cur, now) {
		return false
	}
	f, err := os.Open(l.path)
	if err != nil {
		return false
	}
	l.f.Close()
	l.f, l.carry = f, nil
	l.r.Reset(f)
	return true
}

// copyLog writes the log at path to w as opts say; flush is called whenever the file is
// read to its current end, so a follower sees lines as they come. With opts.follow it
// returns once fl.running says the container stopped (after a last read), ctx ends or the
// limit is reached. A file that cannot be opened is an error before anything is written.
func copyLog(ctx context.Context, path string, opts logOptions, w io.Writer, flush func(), fl *follower, badLine func(error)) error {
	lf, err := openLogFile(path)
	if err != nil {
		return err
	}
	defer lf.close()
	c := &logCopier{opts: opts, w: w, pending: map[string]*logEntry{}, tailing: opts.tail >= 0, badLine: badLine}
	line := func(b []byte) error {
		e, err := parseLogLine(b)
		if err != nil {
			if c.badLine != nil {
				c.badLine(err)
			}
			return nil
		}
		return c.add(e)
	}
	done := func(err error) error {
		if err == nil {
			err = c.endPartials()
		}
		flush()
		if errors.Is(err, errLimitReached) {
			return nil
		}
		return err
	}
	if err := lf.readAvailable(line); err != nil {
		return done(err)
	}
	if err := c.endTail(); err != nil {
		return done(err)
	}
	if !opts.follow || fl == nil {
		return done(nil)
	}
	flush()
	checkEvery := max(fl.checkEvery, 1)
	for waits := 1; ; waits++ {
		if err := fl.wait(ctx); err != nil {
			return done(nil) // the client went away
		}
		if err := lf.readAvailable(line); err != nil {
			return done(err)
		}
		if lf.rotated() {
			if err := lf.readAvailable(line); err != nil {
				return done(err)
			}
		}
		flush()
		if waits%checkEvery == 0 && !fl.running(ctx) {
			if err := lf.readAvailable(line); err != nil {
				return done(err)
			}
			return done(nil)
		}
	}
}
