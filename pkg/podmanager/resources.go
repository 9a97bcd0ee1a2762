package podmanager

import (
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CFS constants the kubelet uses.
const (
	cpuPeriod    = 100000 // µs
	minShares    = 2
	sharesPerCPU = 1024
	minQuota     = 1000 // µs
)

// linuxResources turns requests and limits into cgroup settings the way the kubelet does:
// shares from the CPU request (the limit when only a limit is set), a CFS quota from the CPU
// limit, and the memory limit in bytes.
func linuxResources(c *v1.Container) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{}
	req, hasReq := c.Resources.Requests[v1.ResourceCPU]
	lim, hasLim := c.Resources.Limits[v1.ResourceCPU]
	if !hasReq && hasLim {
		req, hasReq = lim, true
	}
	r.CpuShares = minShares
	if hasReq {
		if s := req.MilliValue() * sharesPerCPU / 1000; s > minShares {
			r.CpuShares = s
		}
	}
	if hasLim {
		r.CpuPeriod = cpuPeriod
		r.CpuQuota = lim.MilliValue() * cpuPeriod / 1000
		if r.CpuQuota < minQuota {
			r.CpuQuota = minQuota
		}
	}
	if mem, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = mem.Value()
	}
	return r
}
