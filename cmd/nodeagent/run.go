package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/controlplane"
	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/network"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/pkg/podmanager/backoff"
	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
	"github.com/nodeagent/nodeagent/pkg/server"
	"github.com/nodeagent/nodeagent/pkg/volume"
)

// The CRI client is what the pod manager drives.
var (
	_ podmanager.Runtime      = (*cri.Client)(nil)
	_ podmanager.ImageService = (*cri.Client)(nil)
	_ logs.Runtime            = (*cri.Client)(nil)
	_ logs.ContainerLister    = (*cri.Client)(nil)
)

// run wires the agent together and blocks until ctx ends. Ending ctx (SIGTERM, SIGINT) stops
// the agent's loops and leaves every pod running.
func run(ctx context.Context, cfg *config) error {
	log := logrus.NewEntry(cfg.newLogger())
	log.WithFields(logrus.Fields{"version": version, "commit": buildCommit(), "node": cfg.NodeName}).Info("starting nodeagent")

	if err := os.MkdirAll(cfg.RootDir, 0o700); err != nil {
		return fmt.Errorf("root-dir: %w", err)
	}
	nodeIP := cfg.NodeIP
	if nodeIP == "" {
		ip, err := detectNodeIP()
		if err != nil {
			log.WithError(err).Warn("could not detect the node IP; pods report no hostIP (set --node-ip)")
		}
		nodeIP = ip
	}

	// One registry for the whole agent, served on /metrics.
	metrics, err := newAgentMetrics()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var debugToken string
	if cfg.DebugTokenFile != "" {
		if debugToken, err = cfg.debugToken(); err != nil {
			return err
		}
	}
	rt, err := cri.New(cfg.RuntimeEndpoint, cri.Options{Metrics: metrics.cri})
	if err != nil {
		return fmt.Errorf("runtime-endpoint: %w", err)
	}
	defer rt.Close()

	// The pod network: a list that can never work stops the agent here with the reason;
	// missing plugins only keep pods that need the network waiting.
	var mgr atomic.Pointer[podmanager.Manager]
	checkPeriod := cfg.CNICheckPeriod
	if checkPeriod == 0 {
		checkPeriod = -1 // disabled
	}
	// A node of a control plane takes its pod CIDR from its Node, unless told one.
	var nodeCIDR chan string
	if cfg.Kubeconfig != "" && !cfg.PodCIDRGiven && cfg.CNIConfig == "" {
		nodeCIDR = make(chan string, 1)
	}
	netSvc, err := network.NewService(network.ServiceConfig{
		ConfigFile:  cfg.CNIConfig,
		PodCIDR:     cfg.PodCIDR,
		Bridge:      cfg.CNIBridge,
		NetworkName: cfg.CNINetworkName,
		NodePodCIDR: nodeCIDR,
		BinDirs:     cfg.CNIBinDirs,
		StateDir:    cfg.CNIStateDir,
		Socket:      cfg.CNISocket,
		CheckPeriod: checkPeriod,
		GCPeriod:    cfg.CNIGCPeriod,
		Sandboxes:   func(ctx context.Context) ([]network.Sandbox, error) { return runtimeSandboxes(ctx, rt, cfg.NodeName) },
		CheckFailed: func(uid, sandboxID string, err error) {
			if m := mgr.Load(); m != nil {
				m.NetworkCheckFailed(types.UID(uid), sandboxID, err)
			}
		},
		// CNI calls feed the metrics and, for ADD, the pod's timeline (Manager.NetworkCall
		// takes no lock a worker holds across RunPodSandbox).
		Observe: func(c network.Call) {
			metrics.observeCNI(c)
			if m := mgr.Load(); m != nil {
				m.NetworkCall(types.UID(c.PodUID), c.Command, c.Start, c.Took, c.Err)
			}
		},
		Log: log.WithField("component", "network"),
	})
	if err != nil {
		return err
	}
	netListener, err := netSvc.Listen()
	if err != nil {
		return err
	}
	netDone := make(chan error, 1)
	netCtx, netCancel := context.WithCancel(ctx)
	go func() { netDone <- netSvc.Run(netCtx, netListener) }()
	defer func() {
		if err := <-netDone; err != nil {
			log.WithError(err).Warn("CNI delegate server stopped with an error")
		}
	}()
	// On an early return (a start error below), stop the network service first.
	defer netCancel()

	// Ready once the runtime answers and every source's pods were synced once: /readyz, and
	// READY=1 to systemd.
	ready := func() error {
		m := mgr.Load()
		if m == nil {
			return errors.New("waiting for the container runtime")
		}
		select {
		case <-m.Synced():
			return nil
		default:
			return errors.New("waiting for the first sync of every pod source")
		}
	}
	// The watchdog is fed while the pod manager's sync loop makes progress.
	alive := func() error {
		if m := mgr.Load(); m != nil {
			return m.Alive()
		}
		return nil // not started yet: start-up is bounded by TimeoutStartSec
	}
	stopSystemd := startSystemd(ctx, ready, alive, log)
	defer stopSystemd()

	// Health checks, shared by the debug server and the node API.
	health := map[string]server.Check{
		"runtime": func(ctx context.Context) error {
			_, err := rt.Version(ctx)
			return err
		},
		"network": func(context.Context) error { return netSvc.Ready() },
	}

	// The debug server answers from the start, so /healthz can say the runtime is missing.
	srv, err := server.New(server.Config{
		Addr: cfg.DebugAddress,
		Log:  log,
		Pods: func() []*v1.Pod {
			if m := mgr.Load(); m != nil {
				return m.Pods()
			}
			return nil
		},
		Health:  health,
		Ready:   ready,
		Token:   debugToken,
		Metrics: metrics.reg,
		PodDebug: func(uid string) (any, bool) {
			if m := mgr.Load(); m != nil {
				return m.PodDebug(types.UID(uid))
			}
			return nil, false
		},
	})
	if err != nil {
		return err
	}
	listener, err := srv.Listen()
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, listener) }()

	ver, err := rt.WaitReady(ctx, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before the runtime was reachable")
			return nil
		}
		return err
	}
	log.WithFields(logrus.Fields{"runtime": ver.RuntimeName, "runtimeVersion": ver.RuntimeVersion, "endpoint": rt.Endpoint()}).
		Info("connected to the container runtime")

	// Probe results only wake the pod's worker; the worker decides what to do. Each failed
	// run also raises the Unhealthy event, as the kubelet's prober does.
	var (
		wake        func(types.UID)
		probeFailed func(prober.Update)
	)
	probes, err := prober.New(prober.Config{
		Exec:      rt,
		Metrics:   metrics.probes,
		Log:       log.WithField("component", "prober"),
		OnChange:  func(u prober.Update) { wake(u.PodUID) },
		OnFailure: func(u prober.Update) { probeFailed(u) },
	})
	if err != nil {
		return err
	}
	defer probes.Stop()

	// The manifest directory serves pods, and the ConfigMaps and Secrets they refer to. A
	// change to those wakes every pod, which is how volume updates reach running pods.
	var (
		sources  []string
		fsrc     *controlplane.FileSource
		configs  = &controlplane.ConfigStore{}
		onConfig func()
	)
	if cfg.PodManifestPath != "" {
		sources = append(sources, controlplane.SourceFile)
		maxBytes, _ := logs.ParseSize(cfg.ManifestMaxBytes) // validated with the config
		fsrc, err = controlplane.NewFileSource(controlplane.FileSourceConfig{
			Dir:            cfg.PodManifestPath,
			NodeName:       cfg.NodeName,
			Log:            log,
			OnConfigChange: func() { onConfig() },
			MaxFileBytes:   maxBytes,
		})
		if err != nil {
			return fmt.Errorf("pod-manifest-path: %w", err)
		}
		configs = fsrc.Configs()
	}
	// With a control plane, pods from the API server read their ConfigMaps, Secrets and
	// service-account tokens from it; static pods keep the manifest directory's.
	var (
		k          *kube
		volConfigs volume.ConfigSource     = configs
		envConfigs podmanager.ConfigSource = configs
		tokens     volume.TokenSource
	)
	if cfg.Kubeconfig != "" {
		k, err = newKube(cfg, log, rt, netSvc, nodeCIDR, func() { onConfig() })
		if err != nil {
			return err
		}
		sources = append(sources, controlplane.SourceKube)
		err = startNodeAPI(ctx, &cfg.NodeAPI, nodeAPIDeps{
			NodeName: cfg.NodeName, NodeIP: nodeIP, RootDir: cfg.RootDir, PodLogsDir: cfg.PodLogsDir,
			Client: k.client, Runtime: rt,
			Healthz: func(ctx context.Context) error {
				for _, name := range []string{"network", "runtime"} {
					if err := health[name](ctx); err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
				}
				return nil
			},
			Pods: func() []*v1.Pod {
				if m := mgr.Load(); m != nil {
					return m.Pods()
				}
				return nil
			},
			Log: log,
		})
		if err != nil {
			return err
		}
		merged := controlplane.NewMergedConfigs(configs, k.configs)
		volConfigs, envConfigs, tokens = merged, merged, k.tokens
	}
	// What a resourceFieldRef to a limit a container does not set reads, as the kubelet
	// reads it: the node's allocatable, the same a registered Node reports.
	sysRes, _ := resourceList("system-reserved", cfg.SystemReserved) // validated with the config
	kubeRes, _ := resourceList("kube-reserved", cfg.KubeReserved)
	alloc, err := controlplane.NodeAllocatable(controlplane.HostMachine(), cfg.RootDir, sysRes, kubeRes)
	if err != nil {
		log.WithError(err).Warn("node allocatable is partly unknown: resourceFieldRefs to unset limits of the missing resources will fail")
	}
	volumes, err := volume.New(volume.Config{
		RootDir:     cfg.RootDir,
		Source:      volConfigs,
		Tokens:      tokens,
		Allocatable: alloc,
		Log:         log.WithField("component", "volumes"),
	})
	if err != nil {
		return fmt.Errorf("root-dir: %w", err)
	}

	pmCfg := podmanager.Config{
		Metrics:              metrics.pods,
		NodeName:             cfg.NodeName,
		NodeIP:               nodeIP,
		PodLogsDir:           cfg.PodLogsDir,
		RuntimeName:          ver.RuntimeName,
		Log:                  log,
		Sources:              sources,
		RelistPeriod:         cfg.RelistPeriod,
		Prober:               probes,
		Volumes:              volumes,
		Configs:              envConfigs,
		Allocatable:          alloc,
		Network:              netSvc,
		AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls,
		KernelRelease:        kernelRelease(),
		Backoff: backoff.Config{
			Initial: cfg.RestartBackoffInitial,
			Max:     cfg.RestartBackoffMax,
			Reset:   cfg.RestartBackoffReset,
		},
	}
	if k != nil {
		k.hooks(&pmCfg)
	}
	m, err := podmanager.New(pmCfg, rt, rt)
	if err != nil {
		return err
	}
	mgr.Store(m)
	wake, probeFailed = m.ProbeChanged, m.ProbeFailed
	onConfig = m.ConfigChanged

	// Exits reach the pod workers through runtime events; a re-established stream may have
	// missed some, so it asks for a relist each time.
	mode, _ := cri.ParseEventsMode(cfg.RuntimeEvents) // validated with the config
	go func() {
		err := rt.RunEvents(ctx, cri.EventsConfig{
			Mode: mode,
			Log:  log,
			Handler: func(ev cri.ContainerEvent) {
				m.HandleContainerEvent(ev.ContainerID, ev.PodUID, string(ev.Type))
			},
			Resync: m.RequestRelist,
		})
		if err != nil && ctx.Err() == nil {
			log.WithError(err).Error("the runtime event stream stopped; relying on relists")
		}
	}()

	if k != nil {
		k.start(ctx, m, cfg.NodeName)
	}
	if fsrc != nil {
		go func() {
			err := fsrc.Run(ctx, func(pods []*v1.Pod) { m.Update(controlplane.SourceFile, pods) })
			if err != nil && ctx.Err() == nil {
				log.WithError(err).Error("the file source stopped")
			}
		}()
	} else if k == nil {
		log.Warn("no pod source configured (--pod-manifest-path, --kubeconfig); the agent runs no pods")
		m.Update("none", nil)
	}

	// Container logs rotate by size; only this node's containers (agents may share a runtime).
	logSize, _ := logs.ParseSize(cfg.ContainerLogMaxSize) // validated with the config
	rotator, err := logs.New(logs.Config{
		List:     logs.RuntimeContainers(rt, map[string]string{cri.LabelNodeName: cfg.NodeName}),
		MaxSize:  logSize,
		MaxFiles: cfg.ContainerLogMaxFiles,
		Period:   cfg.ContainerLogMonitorInterval,
		Log:      log.WithField("component", "logs"),
	}, rt)
	if err != nil {
		return err
	}
	go rotator.Run(ctx)

	m.Run(ctx)
	if err := <-serveErr; err != nil {
		log.WithError(err).Warn("debug server stopped with an error")
	}
	log.Info("nodeagent stopped; pods keep running")
	return nil
}

// runtimeSandboxes is the runtime's every sandbox, as the network service sees them.
func runtimeSandboxes(ctx context.Context, rt *cri.Client, node string) ([]network.Sandbox, error) {
	sbs, err := rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]network.Sandbox, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, network.Sandbox{
			ID:     sb.Id,
			PodUID: sb.Labels[cri.LabelPodUID],
			Ready:  sb.State == runtimeapi.PodSandboxState_SANDBOX_READY,
			Mine:   sb.Labels[cri.LabelNodeName] == node,
		})
	}
	return out, nil
}
