package network

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestPodIsReachableOnItsIPFromTheHostAndFromAnotherPod(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("a.yaml", serverPod("a", nil, ""))
	a.WriteManifest("b.yaml", serverPod("b", nil, ""))
	podA := a.WaitRunning("a", startTimeout)
	podB := a.WaitRunning("b", startTimeout)

	// The IP in the pod's status is the one CRI reports and the one inside the pod.
	_, criIP := sandboxIP(t, a, podA)
	if podA.Status.PodIP == "" || podA.Status.PodIP != criIP {
		t.Fatalf("pod status IP %q, CRI PodSandboxStatus IP %q", podA.Status.PodIP, criIP)
	}
	if addrs := execIn(t, a, podA, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(addrs, "inet "+criIP+"/") {
		t.Fatalf("eth0 in the pod has not got %s:\n%s", criIP, addrs)
	}
	if podA.Status.PodIP == podB.Status.PodIP {
		t.Fatalf("two pods share the IP %s", podA.Status.PodIP)
	}

	// Host -> pod.
	waitAnswers(t, "http://"+podA.Status.PodIP+":8080/", a.PodName("a"))

	// Pod -> pod, over the bridge.
	req := `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + podA.Status.PodIP + ` 8080`
	if out := execIn(t, a, podB, "sh", "-c", req); !strings.Contains(out, "200 OK") || !strings.Contains(out, a.PodName("a")) {
		t.Fatalf("pod b -> pod a: %q", out)
	}
}

func TestHostPortAnswersFromTheHostAddressAndLoopback(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	const hostPort = 31707
	a.WriteManifest("hp.yaml", serverPod("hp", nil, fmt.Sprintf(`    ports:
    - containerPort: 8080
      hostPort: %d
`, hostPort)))
	pod := a.WaitRunning("hp", startTimeout)
	if pod.Status.HostIP == "" {
		t.Fatal("pod has no hostIP")
	}
	for _, host := range []string{"127.0.0.1", pod.Status.HostIP} {
		waitAnswers(t, fmt.Sprintf("http://%s:%d/", host, hostPort), a.PodName("hp"))
	}

	// Deleting the pod takes its hostPort rules with it.
	a.RemoveManifest("hp.yaml")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(a.Sandboxes(nil)) == 0, "pod not gone"
	})
	if rules := natRules(t); strings.Contains(strings.Join(rules, "\n"), fmt.Sprint(hostPort)) {
		t.Errorf("hostPort rules left after the pod went:\n%s", strings.Join(rules, "\n"))
	}
}

func TestBandwidthAnnotationsShapeThePod(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("slow.yaml", serverPod("slow", map[string]string{
		"kubernetes.io/ingress-bandwidth": "1M",
		"kubernetes.io/egress-bandwidth":  "2M",
	}, ""))
	pod := a.WaitRunning("slow", startTimeout)
	id, _ := sandboxIP(t, a, pod)
	veth := hostVeth(t, id)

	// The bandwidth plugin shapes the pod's ingress with a token bucket on the host side of
	// its veth, and its egress on an ifb device the veth's ingress is redirected to.
	qdisc := run(t, "tc", "qdisc", "show", "dev", veth)
	if !strings.Contains(qdisc, "tbf") || !strings.Contains(qdisc, "rate 1Mbit") {
		t.Errorf("ingress: tc qdisc on %s:\n%s\nwant a tbf at 1Mbit", veth, qdisc)
	}
	all := run(t, "tc", "qdisc", "show")
	if !strings.Contains(all, "rate 2Mbit") {
		t.Errorf("egress: no 2Mbit tbf on any device:\n%s", all)
	}
}

func TestCreateDeleteCyclesLeakNothing(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	leasesBefore, rulesBefore, cacheBefore := leases(t), natRules(t), cachedResults(t)

	const rounds, perRound = 5, 10
	for r := 0; r < rounds; r++ {
		for i := 0; i < perRound; i++ {
			a.WriteManifest(fmt.Sprintf("c%d.yaml", i), serverPod(fmt.Sprintf("c%d-r%d", i, r), nil, `    ports:
    - containerPort: 8080
      hostPort: `+fmt.Sprint(31800+i)+"\n"))
		}
		ips := map[string]bool{}
		for i := 0; i < perRound; i++ {
			p := a.WaitRunning(fmt.Sprintf("c%d-r%d", i, r), startTimeout)
			if ips[p.Status.PodIP] {
				t.Fatalf("round %d: IP %s handed out twice", r, p.Status.PodIP)
			}
			ips[p.Status.PodIP] = true
		}
		if n := len(leases(t)) - len(leasesBefore); n != perRound {
			t.Fatalf("round %d: %d new leases for %d pods", r, n, perRound)
		}
		for i := 0; i < perRound; i++ {
			a.RemoveManifest(fmt.Sprintf("c%d.yaml", i))
		}
		framework.Eventually(t, 60*time.Second, func() (bool, string) {
			n := len(a.Sandboxes(nil))
			return n == 0, fmt.Sprintf("round %d: %d sandboxes left", r, n)
		})
	}

	if got := leases(t); !reflect.DeepEqual(got, leasesBefore) {
		t.Errorf("IPAM leases after %d cycles: %v, before: %v", rounds*perRound, got, leasesBefore)
	}
	if got := natRules(t); !reflect.DeepEqual(got, rulesBefore) {
		t.Errorf("iptables NAT rules after %d cycles:\n%s\nbefore:\n%s", rounds*perRound, strings.Join(got, "\n"), strings.Join(rulesBefore, "\n"))
	}
	if got := cachedResults(t); !reflect.DeepEqual(got, cacheBefore) {
		t.Errorf("CNI result cache after %d cycles: %v, before: %v", rounds*perRound, got, cacheBefore)
	}
}

func TestKill9DuringCreationsLeavesNoAddressBehind(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	before := len(leases(t))
	const pods = 20
	for i := 0; i < pods; i++ {
		a.WriteManifest(fmt.Sprintf("k%02d.yaml", i), serverPod(fmt.Sprintf("k%02d", i), nil, ""))
	}
	// Kill it while creations are under way: some sandboxes done, others not started.
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		n := len(a.Sandboxes(nil))
		return n >= 3, fmt.Sprintf("%d sandboxes", n)
	})
	a.Signal(syscall.SIGKILL, 10*time.Second)
	t.Logf("killed the agent with %d of %d sandboxes created", len(a.Sandboxes(nil)), pods)

	a.Start()
	ips := map[string]string{}
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("k%02d", i)
		p := a.WaitRunning(name, 2*startTimeout)
		if other, dup := ips[p.Status.PodIP]; dup {
			t.Fatalf("pods %s and %s share IP %s", other, name, p.Status.PodIP)
		}
		ips[p.Status.PodIP] = name
	}
	// Every pod has exactly one working address, and no other address is held (the GC at
	// start freed what the killed ADDs had taken).
	for ip, name := range ips {
		waitAnswers(t, "http://"+ip+":8080/", a.PodName(name))
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		n := len(leases(t)) - before
		return n == pods, fmt.Sprintf("%d leases held for %d pods: %v", n, pods, leases(t))
	})
}

func TestBrokenPodNetworkIsReplacedWithAClearReason(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{"--cni-check-period", "1s"}})
	a.WriteManifest("fragile.yaml", serverPod("fragile", nil, ""))
	pod := a.WaitRunning("fragile", startTimeout)
	oldID, _ := sandboxIP(t, a, pod)

	// Someone deletes the pod's veth on the host: the pod is cut off.
	run(t, "ip", "link", "del", hostVeth(t, oldID))

	var fixed *v1.Pod
	framework.Eventually(t, 90*time.Second, func() (bool, string) {
		fixed = a.FindPod("fragile")
		if fixed == nil || fixed.Status.Phase != v1.PodRunning || len(fixed.Status.ContainerStatuses) != 1 {
			return false, "pod not running"
		}
		cs := fixed.Status.ContainerStatuses[0]
		last := cs.LastTerminationState.Terminated
		return cs.Ready && cs.RestartCount == 1 && last != nil && strings.Contains(last.Message, "CNI CHECK"),
			fmt.Sprintf("container status %+v", cs)
	})
	newID, ip := sandboxIP(t, a, fixed)
	if newID == oldID {
		t.Fatal("the broken sandbox was kept")
	}
	waitAnswers(t, "http://"+ip+":8080/", a.PodName("fragile"))
	a.WaitLog(5*time.Second, "pod network failed CNI CHECK")
}

func TestBadCNIConfigIsAClearError(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conflist")
	run(t, "sh", "-c", `printf '{"cniVersion": "1.0.0", "name": "x",\n "plugins": [}' > `+bad)
	cmd := exec.Command(framework.AgentBinary(t), "--node-name", "bad-cni", "--root-dir", filepath.Join(dir, "root"),
		"--runtime-endpoint", framework.TB.RuntimeEndpoint, "--cni-config", bad,
		"--cni-socket", filepath.Join(dir, "cni.sock"), "--debug-address", "127.0.0.1:0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); err == nil || code == 0 {
		t.Fatalf("agent with a bad --cni-config exited %d:\n%s", code, out.String())
	}
	if msg := out.String(); !strings.Contains(msg, "--cni-config "+bad) || !strings.Contains(msg, "bad JSON at line 2") {
		t.Fatalf("error does not name the file and the problem:\n%s", msg)
	}
}

func TestMissingPluginKeepsPodsWaitingWithTheReason(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "mine.conflist")
	run(t, "sh", "-c", `echo '{"cniVersion": "1.1.0", "name": "mine", "plugins": [{"type": "no-such-plugin"}]}' > `+list)
	// Its own socket, outside the test bed's socket dir: containerd must keep reaching the
	// healthy agents of this test bed, not this broken one.
	a := framework.StartAgent(t, framework.AgentOptions{Unhealthy: true, ExtraArgs: []string{
		"--cni-config", list, "--cni-socket", filepath.Join(dir, "cni.sock"),
	}})
	a.WriteManifest("waits.yaml", serverPod("waits", nil, ""))
	p := a.WaitPod("waits", 20*time.Second, "Pending with NetworkNotReady", func(p *v1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodReadyToStartContainers && c.Reason == "NetworkNotReady" {
				return p.Status.Phase == v1.PodPending && strings.Contains(c.Message, `"no-such-plugin"`)
			}
		}
		return false
	})
	if n := len(a.Sandboxes(nil)); n != 0 {
		t.Fatalf("%d sandboxes created without a network (pod %s)", n, p.Name)
	}
	code, body, err := a.Get("/healthz")
	if err != nil || code == 200 || !strings.Contains(body, "network") || !strings.Contains(body, "no-such-plugin") {
		t.Fatalf("/healthz: %d %q %v; want a failure naming the network and the plugin", code, body, err)
	}
}

func TestDelegateWithoutTheAgentFailsCleanly(t *testing.T) {
	// No agent runs on the test bed now: containerd's delegate finds nobody to forward to.
	before := leases(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "no-agent", Namespace: "default", Uid: "no-agent-uid"},
		LogDirectory: t.TempDir(),
	}
	id, err := framework.TB.CRI.RunPodSandbox(ctx, cfg, "")
	if err == nil {
		t.Fatalf("RunPodSandbox succeeded (sandbox %s) with no agent to set up its network", id)
	}
	if !strings.Contains(err.Error(), "nodeagent is not reachable") {
		t.Errorf("RunPodSandbox error does not say the agent is missing: %v", err)
	}
	// containerd may keep a NotReady sandbox reserving the name; removing it must work
	// without the agent (the delegate runs the DEL itself).
	sbs, lerr := framework.TB.CRI.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: nil})
	if lerr != nil {
		t.Fatal(lerr)
	}
	for _, sb := range sbs {
		if sb.GetMetadata().GetName() != "no-agent" {
			continue
		}
		if err := framework.TB.CRI.StopPodSandbox(ctx, sb.Id); err != nil {
			t.Errorf("stop the failed sandbox without the agent: %v", err)
		}
		if err := framework.TB.CRI.RemovePodSandbox(ctx, sb.Id); err != nil {
			t.Errorf("remove the failed sandbox without the agent: %v", err)
		}
	}
	if got := leases(t); !reflect.DeepEqual(got, before) {
		t.Errorf("leases changed: %v -> %v", before, got)
	}

	// The delegate run by hand, as containerd runs it.
	cmd := exec.Command(framework.AgentBinary(t))
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_NETNS=/proc/self/ns/net", "CNI_IFNAME=eth0", "CNI_PATH=" + framework.TB.Values["CNI_BIN_DIR"]}
	cmd.Stdin = strings.NewReader(`{"cniVersion": "1.0.0", "name": "x", "type": "nodeagent", "socket": "` + filepath.Join(t.TempDir(), "none.sock") + `"}`)
	out, _ := cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), `"code":11`) || !strings.Contains(string(out), "nodeagent is not reachable") {
		t.Errorf("delegate without the agent: exit %d, stdout %s", cmd.ProcessState.ExitCode(), out)
	}
}
