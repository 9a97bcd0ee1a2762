package network

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// AttachmentFromRequest reads the attachment a forwarded call is about: the pod identity from
// CNI_ARGS (containerd sets K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID there) and the
// capability args containerd computed from the pod (hostPorts, the bandwidth annotations) from
// the runtimeConfig of the config it passed. The agent then runs its own list with them, so
// the delegate's config needs only declare those capabilities for containerd to fill them.
func AttachmentFromRequest(req Request) (Attachment, error) {
	a := Attachment{ContainerID: req.ContainerID, NetNS: req.NetNS, IfName: req.IfName}
	for _, kv := range strings.Split(req.Args, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Attachment{}, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS entry %q is not KEY=VALUE", kv), "")
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_UID":
			a.PodUID = v
		}
	}
	if len(req.StdinData) == 0 {
		return a, nil
	}
	var conf struct {
		RuntimeConfig struct {
			PortMappings []PortMapping `json:"portMappings"`
			Bandwidth    *Bandwidth    `json:"bandwidth"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(req.StdinData, &conf); err != nil {
		return Attachment{}, types.NewError(types.ErrDecodingFailure, "decode the runtimeConfig containerd passed", err.Error())
	}
	a.PortMappings = conf.RuntimeConfig.PortMappings
	a.Bandwidth = conf.RuntimeConfig.Bandwidth
	return a, nil
}

// EncodeResult converts the network list's result to the version the caller's config asked
// for (containerd's delegate config may be older than the node list) and encodes it for the
// delegate to print. An empty cniVersion keeps the result's own.
func EncodeResult(result types.Result, cniVersion string) ([]byte, error) {
	if cniVersion != "" && cniVersion != result.Version() {
		conv, err := result.GetAsVersion(cniVersion)
		if err != nil {
			return nil, types.NewError(types.ErrIncompatibleCNIVersion,
				fmt.Sprintf("convert the CNI result from %s to %s", result.Version(), cniVersion), err.Error())
		}
		result = conv
	}
	b, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("encode CNI result: %w", err)
	}
	return b, nil
}

// RequestCNIVersion is the cniVersion of the config containerd passed with req, "" if none.
func RequestCNIVersion(req Request) string { return configVersion(req.StdinData) }
