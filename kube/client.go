package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// NodeClient is what a Manager needs of the API server: the Nodes
// resource. client-go's typed client has these methods, so a caller with a
// clientset passes clientset.CoreV1().Nodes(); NewNodeClient makes one
// without a clientset.
//
// The Manager's informer asks for its first listing as a stream of watch
// events (client-go's WatchList), which a real API server serves. A client
// that cannot, as client-go's fake clientset cannot, must say so with a
// method IsWatchListSemanticsUnSupported returning true: the fake
// clientset has that method, but the typed client its CoreV1().Nodes()
// returns does not, so pass WithoutWatchList(fake.CoreV1().Nodes()).
// Without it the first listing never arrives: the Manager then logs so
// after 30 s and reports it as its condition.
type NodeClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error)
}

// NewNodeClient returns a NodeClient for config that knows only the core/v1
// types, over protobuf. A clientset registers every API group of
// Kubernetes when the program starts, which costs an agent that reads only
// Nodes tens of megabytes of resident memory.
func NewNodeClient(config *rest.Config) (NodeClient, error) {
	rc, params, err := coreV1Client(config)
	if err != nil {
		return nil, err
	}
	return &nodeClient{rc: rc, params: params}, nil
}

// coreV1Client is a REST client for the core/v1 types alone, over
// protobuf.
func coreV1Client(config *rest.Config) (*rest.RESTClient, runtime.ParameterCodec, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	c := rest.CopyConfig(config)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: %w", err)
	}
	return rc, runtime.NewParameterCodec(scheme), nil
}

type nodeClient struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
}

func (c *nodeClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error) {
	n := &corev1.Node{}
	err := c.rc.Get().Resource("nodes").Name(name).VersionedParams(&opts, c.params).Do(ctx).Into(n)
	return n, err
}

func (c *nodeClient) List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	l := &corev1.NodeList{}
	err := c.rc.Get().Resource("nodes").VersionedParams(&opts, c.params).Do(ctx).Into(l)
	return l, err
}

func (c *nodeClient) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Resource("nodes").VersionedParams(&opts, c.params).Watch(ctx)
}

func (c *nodeClient) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error) {
	n := &corev1.Node{}
	err := c.rc.Patch(pt).Resource("nodes").Name(name).SubResource(subresources...).VersionedParams(&opts, c.params).Body(data).Do(ctx).Into(n)
	return n, err
}

// WithoutWatchList returns c, declared unable to stream a list through a
// watch, so that the Manager's informer lists Nodes with a plain List
// instead: for client-go's fakes, and for any NodeClient of an embedder's
// that serves List and Watch but not WatchList.
func WithoutWatchList(c NodeClient) NodeClient { return plainListing{c} }

type plainListing struct{ NodeClient }

func (plainListing) IsWatchListSemanticsUnSupported() bool { return true }
