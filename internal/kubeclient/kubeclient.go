// Package kubeclient builds the clients that both the controller and the speaker need.
package kubeclient

import (
	"fmt"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// Clients are the Kubernetes clients of one component.
type Clients struct {
	Kube kubernetes.Interface
	// CRD reaches the ironlb.io/v1alpha1 resources.
	CRD rest.Interface
	// Scheme knows Kubernetes' and ironlb's types, for event recorders.
	Scheme *runtime.Scheme
}

// New builds the clients for cfg.
func New(cfg *rest.Config) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	crd, err := v1alpha1.NewRESTClient(cfg)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	return &Clients{Kube: kube, CRD: crd, Scheme: scheme}, nil
}
