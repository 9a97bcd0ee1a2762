package kubetb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// stopGrace is how long a process has to exit after SIGTERM before it gets SIGKILL; both
// etcd and kube-apiserver take one or two seconds.
const stopGrace = 10 * time.Second

// process is one control plane process, its output in a log file under the cluster's dir.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned
	err  error         // Wait's result; read only after done is closed
}

// startProcess starts bin in its own process group, so a Ctrl-C meant for the test never
// reaches it, with SIGKILL as its parent-death signal, so a test binary that dies without
// Stop (a panic, a timeout) leaves nothing running. It writes dir/<name>.pid.
func startProcess(dir, name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	pidFile := filepath.Join(dir, name+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return p, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, with how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, fmt.Errorf("%s (pid %d) exited: %v; its log ends with:\n%s", p.name, p.pid(), p.err, p.logTail())
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process (never to anything else) and waits for it to exit,
// sending SIGKILL after stopGrace. It reports a process that needed SIGKILL, and one that had
// already died on its own if reportDead.
func (p *process) stop(reportDead bool) error {
	if dead, err := p.exited(); dead {
		if !reportDead {
			return nil
		}
		return err
	}
	// os.Process signals through a pidfd, so a recycled PID is never hit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	killErr := p.cmd.Process.Kill()
	<-p.done
	if killErr != nil && !errors.Is(killErr, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid(), killErr)
	}
	return fmt.Errorf("%s (pid %d) still ran %v after SIGTERM; killed it", p.name, p.pid(), stopGrace)
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill() error {
	if dead, err := p.exited(); dead {
		return err
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid(), err)
	}
	<-p.done
	return nil
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	const max = 3000
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.log, err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
