package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/nodeagent/nodeagent/pkg/podmanager"
)

// The CLI is for people on the node: `nodeagent pods` and `nodeagent describe <pod>` read the
// running agent's debug server, so they show exactly what the agent knows, with or without a
// control plane, and read like `kubectl get pods -o wide` and `kubectl describe pod`.

// cliCommands are the subcommands runCLI handles.
var cliCommands = map[string]func(args []string, stdout io.Writer, now time.Time) error{
	"pods":     cmdPods,
	"describe": cmdDescribe,
}

// runCLI runs the subcommand args[0] if it is one, and reports whether it was and the exit
// code: 0, 1 when it failed, 2 for a usage error.
func runCLI(args []string, stdout, stderr io.Writer) (code int, handled bool) {
	if len(args) == 0 {
		return 0, false
	}
	cmd, ok := cliCommands[args[0]]
	if !ok {
		return 0, false
	}
	err := cmd(args[1:], stdout, time.Now())
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return 0, true
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "nodeagent %s: %v\n", args[0], err)
		return 2, true
	case err != nil:
		fmt.Fprintf(stderr, "nodeagent %s: %v\n", args[0], err)
		return 1, true
	}
	return 0, true
}

type usageError struct{ error }

// debugClient reads the agent's debug server.
type debugClient struct {
	base  string // http://host:port
	token string // "" sends no Authorization
	http  *http.Client
}

// cliFlags registers the flags every subcommand shares.
func cliFlags(name string) (*pflag.FlagSet, *string, *string) {
	fs := pflag.NewFlagSet("nodeagent "+name, pflag.ContinueOnError)
	addr := fs.String("debug-address", "127.0.0.1:10248", "the agent's --debug-address")
	tokenFile := fs.String("debug-token-file", "", "file holding the agent's debug token (needed when the agent has one)")
	return fs, addr, tokenFile
}

func newDebugClient(addr, tokenFile string) (*debugClient, error) {
	c := &debugClient{base: "http://" + addr, http: &http.Client{Timeout: 10 * time.Second}}
	if tokenFile != "" {
		tok, err := readTokenFile(tokenFile)
		if err != nil {
			return nil, err
		}
		c.token = tok
	}
	return c, nil
}

// readTokenFile reads a bearer token file: its content, surrounding whitespace trimmed, must
// be one token (not empty, no inner whitespace). The agent (--debug-token-file) and the CLI read it the same way.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("debug-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\n") {
		return "", fmt.Errorf("debug-token-file: %s must hold one token", path)
	}
	return tok, nil
}

// getJSON fetches path and decodes it into out.
func (c *debugClient) getJSON(path string, out any) error {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("GET %s: 401 Unauthorized: pass the agent's token with --debug-token-file", path)
	default:
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (c *debugClient) pods() ([]v1.Pod, error) {
	var list v1.PodList
	if err := c.getJSON("/pods", &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// cmdPods prints the node's pods as `kubectl get pods -A -o wide` would.
func cmdPods(args []string, stdout io.Writer, now time.Time) error {
	fs, addr, tokenFile := cliFlags("pods")
	if err := fs.Parse(args); err != nil {
		return usageOrHelp(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	c, err := newDebugClient(*addr, *tokenFile)
	if err != nil {
		return err
	}
	pods, err := c.pods()
	if err != nil {
		return err
	}
	return printPods(stdout, pods, now)
}

func usageOrHelp(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return err
	}
	return usageError{err}
}

// newTabWriter lays out columns as kubectl's printers do.
func newTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0) }

// printPods writes the table: NAMESPACE NAME READY STATUS RESTARTS AGE IP.
func printPods(w io.Writer, pods []v1.Pod, now time.Time) error {
	sort.SliceStable(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tAGE\tIP")
	for i := range pods {
		p := &pods[i]
		row := podRow(p, now)
		ip := p.Status.PodIP
		if ip == "" {
			ip = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, row.ready, row.total, row.status, row.restarts, age(podCreated(p), now), ip)
	}
	return tw.Flush()
}

// podCreated is the pod's creation time, or when the agent started it for pods that carry
// none (manifest files).
func podCreated(p *v1.Pod) time.Time {
	if !p.CreationTimestamp.IsZero() {
		return p.CreationTimestamp.Time
	}
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return time.Time{}
}

// age prints a duration as kubectl's AGE column does; "<unknown>" without a time.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// podSummary is what kubectl's pod printer derives from a pod's status.
type podSummary struct {
	ready, total int
	status       string
	restarts     string // "3" or "3 (45s ago)"
}

// podRow computes READY, STATUS and RESTARTS exactly as kubectl's printPod does, so a pod
// reads the same here as through the API server: the phase, overridden by the pod's reason,
// then by the first init container that has not finished ("Init:1/2", "Init:Error",
// "Init:CrashLoopBackOff"), then by the last app container with a waiting or terminated
// reason (ContainerCreating, CrashLoopBackOff, Completed, Error, ExitCode:N); "Terminating"
// while a deletion is under way.
func podRow(pod *v1.Pod, now time.Time) podSummary {
	restarts, sidecarRestarts := 0, 0
	total := len(pod.Spec.Containers)
	ready := 0
	var lastRestart, lastSidecarRestart time.Time

	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Reason == v1.PodReasonSchedulingGated {
			reason = v1.PodReasonSchedulingGated
		}
	}

	sidecars := map[string]bool{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			total++
		}
	}

	initializing := false
	for i := range pod.Status.InitContainerStatuses {
		cs := pod.Status.InitContainerStatuses[i]
		restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
		if sidecars[cs.Name] {
			sidecarRestarts += int(cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastSidecarRestart) {
				lastSidecarRestart = t.FinishedAt.Time
			}
		}
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case sidecars[cs.Name] && cs.Started != nil && *cs.Started:
			if cs.Ready {
				ready++
			}
			continue
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			switch {
			case t.Reason != "":
				reason = "Init:" + t.Reason
			case t.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", t.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
			}
			initializing = true
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
			initializing = true
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
			initializing = true
		}
		break
	}

	if !initializing || conditionTrue(pod, v1.PodInitialized) {
		restarts, lastRestart = sidecarRestarts, lastSidecarRestart
		hasRunning := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			restarts += int(cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
				lastRestart = t.FinishedAt.Time
			}
			switch {
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				reason = cs.State.Waiting.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
				reason = cs.State.Terminated.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", cs.State.Terminated.Signal)
			case cs.State.Terminated != nil:
				reason = fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode)
			case cs.Ready && cs.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		// A pod whose finished container is listed last but that still runs others is
		// Running (or NotReady), not Completed.
		if reason == "Completed" && hasRunning {
			if conditionTrue(pod, v1.PodReady) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}

	if pod.DeletionTimestamp != nil && pod.Status.Reason == "NodeLost" {
		reason = "Unknown"
	} else if pod.DeletionTimestamp != nil && pod.Status.Phase != v1.PodSucceeded && pod.Status.Phase != v1.PodFailed {
		reason = "Terminating"
	}

	r := fmt.Sprint(restarts)
	if restarts > 0 && !lastRestart.IsZero() {
		r = fmt.Sprintf("%d (%s ago)", restarts, duration.HumanDuration(now.Sub(lastRestart)))
	}
	return podSummary{ready: ready, total: total, status: reason, restarts: r}
}

func conditionTrue(pod *v1.Pod, t v1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// cmdDescribe prints one pod as `kubectl describe pod` would, plus the agent's timeline of it.
func cmdDescribe(args []string, stdout io.Writer, now time.Time) error {
	fs, addr, tokenFile := cliFlags("describe")
	ns := fs.StringP("namespace", "n", "", "the pod's namespace (default: the only pod of that name, else \"default\")")
	if err := fs.Parse(args); err != nil {
		return usageOrHelp(err)
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("usage: nodeagent describe <pod> [-n namespace]")}
	}
	name := fs.Arg(0)
	c, err := newDebugClient(*addr, *tokenFile)
	if err != nil {
		return err
	}
	pods, err := c.pods()
	if err != nil {
		return err
	}
	pod, err := findPod(pods, *ns, name)
	if err != nil {
		return err
	}
	var d podmanager.PodDebug
	if err := c.getJSON("/debug/pods/"+string(pod.UID), &d); err != nil {
		// The pod may have gone between the two requests; what there is still helps.
		d = podmanager.PodDebug{}
	}
	return printDescribe(stdout, pod, &d, now)
}

// findPod picks the pod by name: in ns when given, else the only one of that name, else the
// one in "default".
func findPod(pods []v1.Pod, ns, name string) (*v1.Pod, error) {
	var found []*v1.Pod
	for i := range pods {
		p := &pods[i]
		if p.Name == name && (ns == "" || p.Namespace == ns) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0 && ns != "":
		return nil, fmt.Errorf("pod %q not found in namespace %q on this node", name, ns)
	case len(found) == 0:
		return nil, fmt.Errorf("pod %q not found on this node", name)
	}
	for _, p := range found {
		if p.Namespace == metav1.NamespaceDefault {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pod %q is in several namespaces; pick one with -n", name)
}

// printDescribe writes the pod's description. Times are printed in RFC 1123 like kubectl's,
// ages relative to now.
func printDescribe(w io.Writer, pod *v1.Pod, d *podmanager.PodDebug, now time.Time) error {
	tw := newTabWriter(w)
	row := podRow(pod, now)
	kv := func(indent int, k, format string, a ...any) {
		fmt.Fprintf(tw, "%s%s:\t%s\n", strings.Repeat("  ", indent), k, fmt.Sprintf(format, a...))
	}
	kv(0, "Name", "%s", pod.Name)
	kv(0, "Namespace", "%s", pod.Namespace)
	kv(0, "UID", "%s", pod.UID)
	node := pod.Spec.NodeName
	if pod.Status.HostIP != "" {
		node += "/" + pod.Status.HostIP
	}
	kv(0, "Node", "%s", orNone(node))
	if pod.Status.StartTime != nil {
		kv(0, "Start Time", "%s", pod.Status.StartTime.Format(time.RFC1123Z))
	}
	for i, l := range labelLines(pod.Labels) {
		if i == 0 {
			kv(0, "Labels", "%s", l)
		} else {
			fmt.Fprintf(tw, "\t%s\n", l)
		}
	}
	kv(0, "Status", "%s", row.status)
	if pod.Status.Reason != "" {
		kv(0, "Reason", "%s", pod.Status.Reason)
	}
	if pod.Status.Message != "" {
		kv(0, "Message", "%s", pod.Status.Message)
	}
	kv(0, "IP", "%s", orNone(pod.Status.PodIP))
	if len(pod.Status.PodIPs) > 1 {
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		kv(0, "IPs", "%s", strings.Join(ips, ", "))
	}
	backoffs := map[string]podmanager.BackoffInfo{}
	for _, b := range d.Backoffs {
		backoffs[b.Key] = b
	}
	if len(pod.Spec.InitContainers) > 0 {
		fmt.Fprintln(tw, "Init Containers:")
		describeContainers(tw, pod.Spec.InitContainers, pod.Status.InitContainerStatuses, backoffs, now)
	}
	fmt.Fprintln(tw, "Containers:")
	describeContainers(tw, pod.Spec.Containers, pod.Status.ContainerStatuses, backoffs, now)
	fmt.Fprintln(tw, "Conditions:")
	fmt.Fprintln(tw, "  Type\tStatus")
	for _, c := range pod.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Type, c.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if d.SandboxError != "" {
		fmt.Fprintf(w, "Sandbox:\n  %s\n", d.SandboxError)
	}
	printTimeline(w, d, now)

	var other []podmanager.BackoffInfo
	for _, b := range d.Backoffs {
		if !strings.HasPrefix(b.Key, "container/") {
			other = append(other, b)
		}
	}
	if len(other) > 0 {
		fmt.Fprintln(w, "Backoffs:")
		tw = newTabWriter(w)
		for _, b := range other {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Key, time.Duration(b.Wait), retryText(b, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "Last Errors:")
	errs := 0
	for _, s := range d.Steps {
		if s.LastError == "" {
			continue
		}
		errs++
		fmt.Fprintf(w, "  %s (%s ago, %d failed): %s\n", stepName(s), duration.HumanDuration(now.Sub(s.LastErrorTime)), s.Failures, s.LastError)
	}
	if errs == 0 {
		fmt.Fprintln(w, "  <none>")
	}

	fmt.Fprint(w, "Events:")
	if len(d.Events) == 0 {
		fmt.Fprintln(w, "  <none>")
		return nil
	}
	fmt.Fprintln(w)
	tw = newTabWriter(w)
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t----\t----\t-------")
	for _, e := range d.Events {
		when := duration.HumanDuration(now.Sub(e.LastTime))
		if e.Count > 1 {
			when = fmt.Sprintf("%s (x%d over %s)", when, e.Count, duration.HumanDuration(now.Sub(e.FirstTime)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, when, "nodeagent", e.Message)
	}
	return tw.Flush()
}

// printTimeline writes the steps of the last start, oldest first, with their durations.
func printTimeline(w io.Writer, d *podmanager.PodDebug, now time.Time) {
	if d.LastSync.Start.IsZero() {
		fmt.Fprintln(w, "Timeline:  <none>")
		return
	}
	fmt.Fprintf(w, "Timeline (last sync %s ago, %s, took %s):\n",
		duration.HumanDuration(now.Sub(d.LastSync.Start)), d.LastSync.Operation, time.Duration(d.LastSync.Duration))
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "  STEP\tCONTAINER\tSTARTED\tDURATION\tRESULT")
	for _, s := range d.Steps {
		result := "ok"
		if s.Detail != "" {
			result = s.Detail
		}
		if s.Error != "" {
			result = "failed: " + s.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Step, orDash(s.Container), s.Start.Format("15:04:05.000"), time.Duration(s.Duration).Round(time.Millisecond), result)
	}
	_ = tw.Flush()
}

func stepName(s podmanager.Step) string {
	if s.Container == "" {
		return s.Step
	}
	return s.Step + " " + s.Container
}

func retryText(b podmanager.BackoffInfo, now time.Time) string {
	if b.RetryAt.IsZero() {
		return "not waiting; the wait after the next failure"
	}
	if left := b.RetryAt.Sub(now); left > 0 {
		return "retry in " + left.Round(time.Second).String()
	}
	return "may retry now"
}

// describeContainers writes each container's state as kubectl describe does, with its
// restart backoff from the timeline.
func describeContainers(tw io.Writer, specs []v1.Container, statuses []v1.ContainerStatus, backoffs map[string]podmanager.BackoffInfo, now time.Time) {
	byName := map[string]*v1.ContainerStatus{}
	for i := range statuses {
		byName[statuses[i].Name] = &statuses[i]
	}
	for _, c := range specs {
		fmt.Fprintf(tw, "  %s:\n", c.Name)
		cs := byName[c.Name]
		if cs != nil && cs.ContainerID != "" {
			fmt.Fprintf(tw, "    Container ID:\t%s\n", cs.ContainerID)
		}
		fmt.Fprintf(tw, "    Image:\t%s\n", c.Image)
		if cs == nil {
			fmt.Fprintln(tw, "    State:\tWaiting")
			continue
		}
		describeState(tw, "State", cs.State)
		if cs.LastTerminationState.Terminated != nil {
			describeState(tw, "Last State", cs.LastTerminationState)
		}
		fmt.Fprintf(tw, "    Ready:\t%s\n", titleBool(cs.Ready))
		fmt.Fprintf(tw, "    Restart Count:\t%d\n", cs.RestartCount)
		if b, ok := backoffs["container/"+c.Name]; ok {
			fmt.Fprintf(tw, "    Restart Backoff:\t%s (%s)\n", time.Duration(b.Wait), retryText(b, now))
		}
	}
}

func describeState(tw io.Writer, label string, s v1.ContainerState) {
	switch {
	case s.Running != nil:
		fmt.Fprintf(tw, "    %s:\tRunning\n", label)
		fmt.Fprintf(tw, "      Started:\t%s\n", s.Running.StartedAt.Format(time.RFC1123Z))
	case s.Terminated != nil:
		t := s.Terminated
		fmt.Fprintf(tw, "    %s:\tTerminated\n", label)
		fmt.Fprintf(tw, "      Reason:\t%s\n", orNone(t.Reason))
		if t.Message != "" {
			fmt.Fprintf(tw, "      Message:\t%s\n", t.Message)
		}
		fmt.Fprintf(tw, "      Exit Code:\t%d\n", t.ExitCode)
		fmt.Fprintf(tw, "      Started:\t%s\n", t.StartedAt.Format(time.RFC1123Z))
		fmt.Fprintf(tw, "      Finished:\t%s\n", t.FinishedAt.Format(time.RFC1123Z))
	case s.Waiting != nil:
		fmt.Fprintf(tw, "    %s:\tWaiting\n", label)
		fmt.Fprintf(tw, "      Reason:\t%s\n", orNone(s.Waiting.Reason))
		if s.Waiting.Message != "" {
			fmt.Fprintf(tw, "      Message:\t%s\n", s.Waiting.Message)
		}
	default:
		fmt.Fprintf(tw, "    %s:\tWaiting\n", label)
	}
}

func titleBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// labelLines lists labels as key=value in key order, as kubectl prints them one per line.
func labelLines(m map[string]string) []string {
	if len(m) == 0 {
		return []string{"<none>"}
	}
	lines := make([]string, 0, len(m))
	for k, v := range m {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	return lines
}
