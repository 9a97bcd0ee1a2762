package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog asks the runtime to close the container's log file and open its log
// path again, creating the file anew. Log rotation renames the file first: lines written
// before the call land in the renamed file, lines after it in the new one. The container
// must be running; otherwise the runtime answers with an error (containerd:
// FailedPrecondition, or NotFound for a container that is gone).
func (c *Client) ReopenContainerLog(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.runtime.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	return translate("ReopenContainerLog", id, err)
}
