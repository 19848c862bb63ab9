package plugin

import (
	"context"
	"fmt"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/internal/kubeclient"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

// Load lists what the reports read. Services, pools and the rest are listed cluster-wide
// (holders of an address may be anywhere); events and EndpointSlices only in namespace
// ("" for all).
func Load(ctx context.Context, c *kubeclient.Clients, class config.Class, namespace string) (*State, error) {
	st := &State{Class: class}
	core := c.Kube.CoreV1()
	all := metav1.ListOptions{}
	svcs, err := core.Services("").List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	st.Services = svcs.Items
	nss, err := core.Namespaces().List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("listing Namespaces: %w", err)
	}
	st.Namespaces = nss.Items
	nodes, err := core.Nodes().List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	st.Nodes = nodes.Items
	slices, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	st.EndpointSlices = slices.Items
	apiSlices, err := c.Kube.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return nil, fmt.Errorf("listing the API server's EndpointSlices: %w", err)
	}
	st.APIServerSlices = apiSlices.Items
	events, err := core.Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.kind", "Service").String()})
	if err != nil {
		return nil, fmt.Errorf("listing Events: %w", err)
	}
	st.Events = events.Items
	var (
		pools    v1alpha1.IPPoolList
		l2       v1alpha1.L2AdvertisementList
		bgp      v1alpha1.BGPAdvertisementList
		peers    v1alpha1.BGPPeerList
		sessions v1alpha1.BGPSessionStateList
		anns     v1alpha1.ServiceAnnouncementList
	)
	for _, l := range []struct {
		resource string
		into     runtime.Object
	}{
		{"ippools", &pools}, {"l2advertisements", &l2}, {"bgpadvertisements", &bgp},
		{"bgppeers", &peers}, {"bgpsessionstates", &sessions}, {"serviceannouncements", &anns},
	} {
		if err := c.CRD.Get().Resource(l.resource).Do(ctx).Into(l.into); err != nil {
			return nil, fmt.Errorf("listing %s: %w", l.resource, err)
		}
	}
	st.Pools, st.L2Ads, st.BGPAds, st.Peers, st.Sessions, st.Announcements = pools.Items, l2.Items, bgp.Items, peers.Items, sessions.Items, anns.Items
	return st, nil
}
