// Command cricleanup is the test bed's small CRI tool (crictl is not available here).
//
//	cricleanup -endpoint unix:///DIR/run/containerd.sock           stop and remove every pod sandbox
//	cricleanup -endpoint ... -list                                  print sandboxes, containers, images
//	cricleanup -endpoint ... -version                               print the runtime version (a readiness probe)
//
// Cleanup goes through StopPodSandbox and RemovePodSandbox rather than killing processes, so
// containerd runs CNI DEL while each network namespace still exists and no address, bridge
// rule or mount leaks. NotFound counts as done: something else removed it first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	var (
		endpoint = flag.String("endpoint", "", "CRI endpoint, e.g. unix:///tmp/tb/run/containerd.sock (required)")
		list     = flag.Bool("list", false, "print pod sandboxes, containers and images instead of cleaning up")
		version  = flag.Bool("version", false, "print the runtime's CRI version instead of cleaning up")
		timeout  = flag.Duration("timeout", 2*time.Minute, "overall deadline")
	)
	flag.Parse()
	if *endpoint == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fatal(fmt.Errorf("dial %s: %w", *endpoint, err))
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)

	switch {
	case *version:
		err = printVersion(ctx, rt)
	case *list:
		err = printAll(ctx, rt, runtimeapi.NewImageServiceClient(conn))
	default:
		err = cleanup(ctx, rt)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cricleanup:", err)
	os.Exit(1)
}

func printVersion(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return fmt.Errorf("CRI Version: %w", err)
	}
	fmt.Printf("%s %s (CRI %s)\n", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return nil
}

func cleanup(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range resp.Items {
		ref := sb.Metadata.GetNamespace() + "/" + sb.Metadata.GetName() + " (" + short(sb.Id) + ")"
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("stop sandbox %s: %w", ref, err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("remove sandbox %s: %w", ref, err))
			continue
		}
		fmt.Println("removed sandbox", ref)
	}
	return errors.Join(errs...)
}

func printAll(ctx context.Context, rt runtimeapi.RuntimeServiceClient, img runtimeapi.ImageServiceClient) error {
	sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	fmt.Println("SANDBOXES")
	for _, sb := range sbs.Items {
		fmt.Printf("%s  %s/%s  attempt=%d  %s  %s\n", short(sb.Id), sb.Metadata.GetNamespace(), sb.Metadata.GetName(),
			sb.Metadata.GetAttempt(), strings.TrimPrefix(sb.State.String(), "SANDBOX_"), labels(sb.Labels))
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	fmt.Println("CONTAINERS")
	for _, c := range ctrs.Containers {
		fmt.Printf("%s  %s  attempt=%d  sandbox=%s  %s  image=%s  %s\n", short(c.Id), c.Metadata.GetName(), c.Metadata.GetAttempt(),
			short(c.PodSandboxId), strings.TrimPrefix(c.State.String(), "CONTAINER_"), c.Image.GetImage(), labels(c.Labels))
	}
	images, err := img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	fmt.Println("IMAGES")
	for _, i := range images.Images {
		fmt.Printf("%s  %s  pinned=%t  %d bytes\n", short(strings.TrimPrefix(i.Id, "sha256:")), strings.Join(i.RepoTags, ","), i.Pinned, i.GetSize())
	}
	return nil
}

func short(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

func labels(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}
