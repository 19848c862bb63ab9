package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Annotations read for migration from MetalLB, in order of precedence after ironlb's own.
var (
	ipsAnnotations     = []string{v1alpha1.AnnotationIPs, "metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"}
	poolAnnotations    = []string{v1alpha1.AnnotationPool, "metallb.io/address-pool", "metallb.universe.tf/address-pool"}
	sharingAnnotations = []string{v1alpha1.AnnotationSharingKey, "metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"}
)

// DefaultClassName is ironlb's spec.loadBalancerClass.
const DefaultClassName = "ironlb.io/ironlb"

// Class says which Services ironlb handles, by spec.loadBalancerClass: the controller
// allocates for them, the speakers announce them.
type Class struct {
	// Name is ironlb's class.
	Name string
	// Only handles Services of class Name only; otherwise also those without a class.
	Only bool
}

// Handles reports whether the Service is a LoadBalancer of ours.
func (c Class) Handles(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return !c.Only
	}
	return *svc.Spec.LoadBalancerClass == c.Name
}

// RequestError is a Service whose annotations or spec cannot be turned into a request.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

// RequestFor turns a LoadBalancer Service (and its namespace's labels) into an allocation
// request. An error means the Service asks for something malformed; it names the annotation
// (or field). With an error, the request still holds everything that could be read.
func RequestFor(svc *corev1.Service, nsLabels map[string]string) (allocator.Request, error) {
	req := allocator.Request{
		Service:         svc.Namespace + "/" + svc.Name,
		Namespace:       svc.Namespace,
		NamespaceLabels: nsLabels,
		ServiceLabels:   svc.Labels,
		Local:           svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	if req.Local {
		req.EndpointSelector = labels.SelectorFromSet(svc.Spec.Selector).String()
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			req.Families = append(req.Families, allocator.IPv4)
		case corev1.IPv6Protocol:
			req.Families = append(req.Families, allocator.IPv6)
		}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			req.Policy = allocator.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			req.Policy = allocator.RequireDualStack
		}
	}
	for _, p := range svc.Spec.Ports {
		req.Ports = append(req.Ports, allocator.Port{Protocol: string(p.Protocol), Port: uint16(p.Port)})
	}

	// Every annotation is read even when an earlier one is malformed: the controller restores
	// the addresses of such a Service with the sharing key and ports read here.
	var poolErr, keyErr, ipsErr error
	req.Pool, poolErr = oneAnnotation(svc, poolAnnotations)
	req.SharingKey, keyErr = oneAnnotation(svc, sharingAnnotations)
	req.IPs, ipsErr = requestedIPs(svc)
	return req, cmp.Or(poolErr, keyErr, ipsErr)
}

// requestedIPs reads the addresses asked for by annotation and spec.loadBalancerIP.
func requestedIPs(svc *corev1.Service) ([]netip.Addr, error) {
	ipsText, err := oneAnnotation(svc, ipsAnnotations)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ipsText != "" {
		for _, s := range strings.Split(ipsText, ",") {
			ip, perr := netip.ParseAddr(strings.TrimSpace(s))
			if perr != nil {
				return nil, &RequestError{fmt.Sprintf("annotation %s: %q is not an IP address", ipsAnnotationName(svc), strings.TrimSpace(s))}
			}
			ips = append(ips, ip)
		}
	}
	if lbIP := svc.Spec.LoadBalancerIP; lbIP != "" {
		ip, perr := netip.ParseAddr(lbIP)
		switch {
		case perr != nil:
			return nil, &RequestError{fmt.Sprintf("spec.loadBalancerIP: %q is not an IP address", lbIP)}
		case len(ips) > 0 && !slices.Contains(ips, ip):
			return nil, &RequestError{fmt.Sprintf("spec.loadBalancerIP %s is not among the addresses of annotation %s (%s)", ip, ipsAnnotationName(svc), ipsText)}
		case len(ips) == 0:
			ips = []netip.Addr{ip}
		}
	}
	return ips, nil
}

// oneAnnotation returns the value of the first of names that the Service carries, and an error
// when two of them disagree (a half-done migration that would otherwise be resolved silently).
func oneAnnotation(svc *corev1.Service, names []string) (string, error) {
	var first, value string
	for _, name := range names {
		v, ok := svc.Annotations[name]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if first == "" {
			first, value = name, v
			continue
		}
		if v != value {
			return "", &RequestError{fmt.Sprintf("annotations %s (%q) and %s (%q) disagree", first, value, name, v)}
		}
	}
	return value, nil
}

func ipsAnnotationName(svc *corev1.Service) string {
	for _, name := range ipsAnnotations {
		if _, ok := svc.Annotations[name]; ok {
			return name
		}
	}
	return ipsAnnotations[0]
}

// IngressIPs returns the addresses in the Service's status.loadBalancer.ingress, in order,
// skipping hostnames and anything that does not parse. The controller writes them, the
// speaker announces them, the plugin explains them: all read them here.
func IngressIPs(svc *corev1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			ips = append(ips, ip)
		}
	}
	return ips
}
