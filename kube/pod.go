package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// PodNodeName returns spec.nodeName of the Pod namespace/name: how an
// agent running in a DaemonSet learns its node's name from the POD_NAME
// and POD_NAMESPACE its manifest sets from the downward API, as flannel
// does when NODE_NAME is not set. It needs "get" on pods in namespace. A
// Pod not yet scheduled has no node name, which is an error.
func PodNodeName(ctx context.Context, config *rest.Config, namespace, name string) (string, error) {
	rc, _, err := coreV1Client(config)
	if err != nil {
		return "", err
	}
	pod := &corev1.Pod{}
	if err := rc.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(pod); err != nil {
		return "", fmt.Errorf("kube: read Pod %s/%s for its node name: %w", namespace, name, err)
	}
	if pod.Spec.NodeName == "" {
		return "", fmt.Errorf("kube: Pod %s/%s has no spec.nodeName yet", namespace, name)
	}
	return pod.Spec.NodeName, nil
}
