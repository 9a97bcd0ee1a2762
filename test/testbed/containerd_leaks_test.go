package testbed

import (
	"strings"
	"testing"
)

func TestCancelledTaskCreateAttributesAShimToItsCancelledCreate(t *testing.T) {
	sb := strings.Repeat("a", 64)
	ctr := strings.Repeat("b", 64)
	other := strings.Repeat("c", 64)
	log := []byte(`time="t" level=info msg="connecting to shim ` + sb + `" address="unix:///run/s/1"
time="t" level=info msg="connecting to shim ` + ctr + `" address="unix:///run/s/1"
time="t" level=info msg="connecting to shim ` + other + `" address="unix:///run/s/2"
time="t" level=error msg="StartContainer for \"` + ctr + `\" failed" error="failed to create containerd task: context canceled"
`)
	if CancelledTaskCreate(log, sb) == "" {
		t.Fatal("a shim whose container's task create was cancelled was not attributed")
	}
	if got := CancelledTaskCreate(log, other); got != "" {
		t.Fatalf("a shim of another pod was attributed: %s", got)
	}
}
