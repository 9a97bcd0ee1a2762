package kubetb

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestScratchRSS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := Start(ctx, dir, logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	n1, _ := c.NodeKubeconfig("n1")
	_, err = c.KubectlAs(ctx, n1, node("n2"), "create", "-f", "-")
	t.Log(err)
	_, err = c.KubectlAs(ctx, n1, lease("n2"), "create", "-f", "-")
	t.Log(err)
	_, err = c.KubectlAs(ctx, n1, "", "get", "secrets", "-A")
	t.Log(err)
	out, err := c.Kubectl(ctx, "get", "sa,cm", "-A")
	t.Log(out, err)
	out, _ = c.Kubectl(ctx, "version")
	t.Log(out)
	for i := 0; i < 4; i++ {
		time.Sleep(10 * time.Second)
		for _, p := range c.procs {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
					t.Log(p.name, l)
				}
			}
		}
	}
	t0 := time.Now()
	t.Log(c.Stop(), time.Since(t0))
}
