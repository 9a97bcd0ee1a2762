package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/go-logr/logr/funcr"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/controlplane"
	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/network"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
)

// kube is the Kubernetes control plane side of the agent (--kubeconfig): the client, the pod
// source, ConfigMaps/Secrets/tokens, events, the status reporter and the Node. Built before
// the pod manager (which takes its hooks), started after it.
type kube struct {
	client   kubeclient.Interface
	source   *controlplane.KubeSource
	configs  *controlplane.KubeConfigs
	tokens   *controlplane.Tokens
	events   *controlplane.EventRecorder
	reporter *controlplane.Reporter
	node     *controlplane.NodeAgent
	nodeCIDR chan<- string // told the Node's pod CIDRs once registered; nil if not wanted
	log      *logrus.Entry
}

// newKube connects to the API server named by the kubeconfig. It does not wait for it: an
// API server that is down at start only delays the API pods, never the static ones.
func newKube(cfg *config, log *logrus.Entry, rt *cri.Client, netSvc *network.Service, nodeCIDR chan<- string, onConfigChange func()) (*kube, error) {
	routeKlog(log)
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	rc.UserAgent = fmt.Sprintf("nodeagent/%s (%s/%s)", version, runtime.GOOS, runtime.GOARCH)
	rc.QPS, rc.Burst = 50, 100
	client, err := kubeclient.New(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	k := &kube{client: client, nodeCIDR: nodeCIDR, log: log.WithField("component", "kube")}

	k.configs, err = controlplane.NewKubeConfigs(controlplane.KubeConfigsConfig{Client: client, Log: k.log, OnChange: onConfigChange})
	if err != nil {
		return nil, err
	}
	k.tokens, err = controlplane.NewTokens(controlplane.TokensConfig{Client: client, Log: k.log, OnChange: onConfigChange})
	if err != nil {
		return nil, err
	}
	k.source, err = controlplane.NewKubeSource(controlplane.KubeSourceConfig{
		Client: client, NodeName: cfg.NodeName, Log: log,
		// Watches and tokens follow what the node's pods reference, nothing more.
		OnPods: func(pods []*v1.Pod) {
			k.configs.Track(pods)
			k.tokens.Track(pods)
		},
	})
	if err != nil {
		return nil, err
	}
	k.events = controlplane.NewEventRecorder(client, cfg.NodeName, k.log)

	taints, _ := cfg.taints() // validated with the config
	sysRes, _ := resourceList("system-reserved", cfg.SystemReserved)
	kubeRes, _ := resourceList("kube-reserved", cfg.KubeReserved)
	hostname, _ := os.Hostname()
	k.node, err = controlplane.NewNodeAgent(controlplane.NodeConfig{
		Client:         client,
		NodeName:       cfg.NodeName,
		NodeIP:         cfg.NodeIP,
		Hostname:       strings.ToLower(hostname),
		Labels:         cfg.NodeLabels,
		Taints:         taints,
		MaxPods:        cfg.MaxPods,
		SystemReserved: sysRes,
		KubeReserved:   kubeRes,
		RootDir:        cfg.RootDir,
		NodeAPIPort:    int32(cfg.NodeAPI.port()),
		Version:        version,
		RuntimeVersion: func(ctx context.Context) (string, error) {
			v, err := rt.Version(ctx)
			if err != nil {
				return "", err
			}
			return v.RuntimeName + "://" + v.RuntimeVersion, nil
		},
		RuntimeReady: func(ctx context.Context) error {
			_, err := rt.Version(ctx)
			return err
		},
		NetworkReady: netSvc.Ready,
		Log:          k.log,
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// hooks fills the pod manager's config with what the API side needs from it.
func (k *kube) hooks(c *podmanager.Config) {
	c.Events = k.events
	c.PodTerminated = func(pod *v1.Pod) {
		k.tokens.Forget(pod.UID)
		k.source.PodTerminated(pod)
	}
	c.StatusChanged = func() {
		if k.reporter != nil {
			k.reporter.Notify()
		}
	}
}

// start runs everything until ctx ends: the Node first (registered in the background, so a
// down API server holds nothing up), then the pod source, the watches and the reporter.
func (k *kube) start(ctx context.Context, m *podmanager.Manager, nodeName string) {
	k.reporter = controlplane.NewReporter(controlplane.ReporterConfig{
		Client:   k.client,
		Source:   k.source,
		NodeName: nodeName,
		NodeUID:  k.node.UID, // "" until registered; it changes if the Node is re-created
		Pods:     m.Pods,
		Log:      k.log,
	})
	go func() {
		node, err := k.node.Register(ctx)
		if err != nil {
			return // ctx ended
		}
		if k.nodeCIDR != nil {
			cidrs := node.Spec.PodCIDRs
			if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
				cidrs = []string{node.Spec.PodCIDR}
			}
			if len(cidrs) == 0 {
				k.log.Info("the Node has no spec.podCIDR; the pod network uses --pod-cidr's default")
			}
			k.nodeCIDR <- strings.Join(cidrs, ",")
		}
		k.reporter.Notify() // mirror pods can be made now
		k.node.Run(ctx)
	}()
	go k.configs.Run(ctx)
	go k.tokens.Run(ctx)
	go func() {
		err := k.source.Run(ctx, func(pods []*v1.Pod) { m.Update(controlplane.SourceKube, pods) })
		if err != nil && ctx.Err() == nil {
			k.log.WithError(err).Error("the API server pod source stopped")
		}
	}()
	go k.reporter.Run(ctx)
	go func() {
		<-ctx.Done()
		k.events.Stop()
	}()
}

// routeKlog sends client-go's own logging (reflector retries, throttling) to our logger at
// debug level: during an API server outage it would otherwise print a line per retry to
// stderr. The agent's components log the outage once, with what it means.
func routeKlog(log *logrus.Entry) {
	l := log.WithField("component", "client-go")
	klog.SetLogger(funcr.New(func(prefix, args string) {
		l.Debug(strings.TrimSpace(prefix + " " + args))
	}, funcr.Options{}))
}
