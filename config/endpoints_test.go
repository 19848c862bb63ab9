package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditionsOf(t *testing.T) {
	tests := []struct {
		name string
		in   discoveryv1.EndpointConditions
		want Conditions
	}{
		{"nothing set: ready and serving, not terminating", discoveryv1.EndpointConditions{}, Conditions{Ready: true, Serving: true}},
		{"not ready: serving defers to ready", discoveryv1.EndpointConditions{Ready: ptr(false)}, Conditions{}},
		{"terminating and still serving", discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)},
			Conditions{Serving: true, Terminating: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConditionsOf(tt.in); got != tt.want {
				t.Errorf("ConditionsOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUsable(t *testing.T) {
	ready := Conditions{Ready: true, Serving: true}
	draining := Conditions{Serving: true, Terminating: true}
	gone := Conditions{Terminating: true}
	notReady := Conditions{}
	servingOnly := Conditions{Serving: true} // not ready, not terminating: never takes traffic
	tests := []struct {
		name string
		in   []Conditions
		want []int // indexes of in
	}{
		{"ready ones only, when one is ready", []Conditions{draining, ready, notReady, ready}, []int{1, 3}},
		{"none ready: the serving terminating ones", []Conditions{draining, gone, notReady, draining}, []int{0, 3}},
		{"serving but not terminating is not a fallback", []Conditions{servingOnly, notReady}, nil},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := make([]int, len(tt.in))
			for i := range idx {
				idx[i] = i
			}
			got := Usable(idx, func(i int) Conditions { return tt.in[i] })
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("usable (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServingNodes(t *testing.T) {
	ep := func(node string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"192.0.2.1"}, NodeName: ptr(node), Conditions: c}
	}
	readyC := discoveryv1.EndpointConditions{}
	drainingC := discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	notReadyC := discoveryv1.EndpointConditions{Ready: ptr(false)}
	slice := func(svc string, family discoveryv1.AddressType, port string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svc + "-" + string(family) + port, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: family, Endpoints: eps,
		}
		if port != "" {
			s.Ports = []discoveryv1.EndpointPort{{Name: ptr(port), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}}
		}
		return s
	}
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   map[string]map[string]bool
	}{
		{
			name:   "the nodes of ready endpoints; terminating ones do not count while one is ready",
			slices: []*discoveryv1.EndpointSlice{slice("web", "IPv4", "http", ep("a", readyC), ep("b", drainingC), ep("c", notReadyC))},
			want:   map[string]map[string]bool{"ns/web": {"a": true}},
		},
		{
			name:   "no ready endpoint: the nodes of the serving terminating ones",
			slices: []*discoveryv1.EndpointSlice{slice("web", "IPv4", "http", ep("b", drainingC), ep("c", notReadyC))},
			want:   map[string]map[string]bool{"ns/web": {"b": true}},
		},
		{
			name: "per family: a family with no ready endpoint falls back on its own",
			slices: []*discoveryv1.EndpointSlice{
				slice("web", "IPv4", "http", ep("a", readyC)),
				slice("web", "IPv6", "http", ep("b", drainingC)),
			},
			want: map[string]map[string]bool{"ns/web": {"a": true, "b": true}},
		},
		{
			name: "per port: a port with no ready endpoint falls back on its own",
			slices: []*discoveryv1.EndpointSlice{
				slice("web", "IPv4", "http", ep("a", readyC)),
				slice("web", "IPv4", "admin", ep("b", drainingC)),
			},
			want: map[string]map[string]bool{"ns/web": {"a": true, "b": true}},
		},
		{
			name: "a Service with no usable endpoint is missing; slices of no Service are ignored",
			slices: []*discoveryv1.EndpointSlice{
				slice("web", "IPv4", "http", ep("c", notReadyC)),
				slice("", "IPv4", "http", ep("a", readyC)),
			},
			want: map[string]map[string]bool{},
		},
		{
			name:   "a slice without ports is one group",
			slices: []*discoveryv1.EndpointSlice{slice("web", "IPv4", "", ep("a", readyC), ep("b", drainingC))},
			want:   map[string]map[string]bool{"ns/web": {"a": true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ServingNodes(tt.slices)); diff != "" {
				t.Errorf("serving nodes (-want +got):\n%s", diff)
			}
		})
	}
}
