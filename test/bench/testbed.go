package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// bed is the bench's private containerd, brought up by hack/testbed.sh.
type bed struct {
	dir      string
	env      map[string]string
	endpoint string // RUNTIME_ENDPOINT
	image    string // BUSYBOX_IMAGE, imported into containerd, never pulled
	cri      *cri.Client
}

// upTestbed starts the test bed in dir (tearing down one an earlier run left there, so every
// run starts from an empty containerd). The returned bed is non-nil whenever something may
// need tearing down, even with an error.
func upTestbed(ctx context.Context, dir string, index int) (*bed, error) {
	tb := &bed{dir: dir}
	progress("bringing up the test bed in %s (index %d)", dir, index)
	env, err := testbed.Up(ctx, dir, index, os.Stderr)
	if err != nil {
		return tb, err
	}
	tb.env, tb.endpoint, tb.image = env.Values, env.RuntimeEndpoint, env.BusyboxImage
	tb.cri, err = cri.New(tb.endpoint, cri.Options{CallTimeout: time.Minute})
	return tb, err
}

// down tears the test bed down, or with keep says where it is.
func (tb *bed) down(keep bool) {
	if keep {
		progress("leaving the test bed up in %s; remove it with: hack/testbed.sh down %s", tb.dir, tb.dir)
		return
	}
	progress("tearing down the test bed in %s", tb.dir)
	if err := testbed.Down(tb.dir, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
}

func (tb *bed) close() {
	if tb.cri != nil {
		_ = tb.cri.Close()
	}
}
