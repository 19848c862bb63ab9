package plugin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// ServiceStatus is one LoadBalancer Service as `kubectl ironlb status` shows it.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ours is false for a Service of another loadBalancerClass; the rest is then empty.
	Ours bool `json:"ours"`
	// Class is spec.loadBalancerClass ("" when unset).
	Class string `json:"class,omitempty"`
	// Request is what the Service asks for, as the controller reads it (annotations, MetalLB's
	// included, and spec.loadBalancerIP); empty when it asks for nothing in particular.
	Request string `json:"request,omitempty"`
	// IPs are the addresses in status.loadBalancer.ingress with the pool holding each.
	IPs []AddressStatus `json:"ips,omitempty"`
	// Allocated is the ironlb.io/IPAllocated condition ("" when the controller wrote none).
	Allocated string `json:"allocated,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message,omitempty"`
	// Announcers are the ServiceAnnouncements: who makes the IPs reachable.
	Announcers []Announcer `json:"announcers,omitempty"`
	// Events are the Service's most recent events, newest first.
	Events []EventLine `json:"events,omitempty"`
}

// AddressStatus is one external address.
type AddressStatus struct {
	IP   string `json:"ip"`
	Pool string `json:"pool,omitempty"`
}

// Announcer is one node announcing a Service in one mode.
type Announcer struct {
	Node       string   `json:"node"`
	Mode       string   `json:"mode"`
	IPs        []string `json:"ips"`
	Interfaces []string `json:"interfaces,omitempty"`
	Peers      []string `json:"peers,omitempty"`
}

// EventLine is one event, as kubectl describe shows it.
type EventLine struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	From    string    `json:"from,omitempty"`
	Count   int32     `json:"count,omitempty"`
	Message string    `json:"message"`
}

// maxEvents is how many events status keeps per Service.
const maxEvents = 5

// Status reports every LoadBalancer Service of st in namespace ("" for all), or only the one
// named name (then namespace must be set), sorted by namespace and name.
func Status(st *State, namespace, name string) []ServiceStatus {
	var out []ServiceStatus
	for i := range st.Services {
		svc := &st.Services[i]
		if !isLoadBalancer(svc) || (namespace != "" && svc.Namespace != namespace) || (name != "" && svc.Name != name) {
			continue
		}
		out = append(out, statusOf(st, svc))
	}
	sortByKey(out, func(s ServiceStatus) string { return s.Namespace + "/" + s.Name })
	return out
}

func statusOf(st *State, svc *corev1.Service) ServiceStatus {
	s := ServiceStatus{Namespace: svc.Namespace, Name: svc.Name, Ours: st.Class.Handles(svc)}
	if svc.Spec.LoadBalancerClass != nil {
		s.Class = *svc.Spec.LoadBalancerClass
	}
	if !s.Ours {
		return s
	}
	s.Request = requestText(svc)
	for _, ip := range config.IngressIPs(svc) {
		a := AddressStatus{IP: ip.String()}
		if p := st.poolOf(ip); p != nil {
			a.Pool = p.Name
		}
		s.IPs = append(s.IPs, a)
	}
	if c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionIPAllocated); c != nil {
		s.Allocated, s.Reason, s.Message = string(c.Status), c.Reason, c.Message
	}
	for _, a := range st.announcementsOf(svc) {
		s.Announcers = append(s.Announcers, Announcer{Node: a.NodeName, Mode: string(a.Mode), IPs: a.IPs, Interfaces: a.Interfaces, Peers: a.Peers})
	}
	for i, e := range st.eventsOf(svc) {
		if i == maxEvents {
			break
		}
		s.Events = append(s.Events, EventLine{Time: eventTime(e), Type: e.Type, Reason: e.Reason,
			From: e.Source.Component + e.ReportingController, Count: e.Count, Message: e.Message})
	}
	return s
}

// WriteStatusTable writes one line per Service: the overview of `kubectl ironlb status`.
func WriteStatusTable(w io.Writer, list []ServiceStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tEXTERNAL-IP\tPOOL\tANNOUNCED BY\tALLOCATED\tLAST EVENT")
	for _, s := range list {
		if !s.Ours {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tnot ironlb's (class %s)\t-\n", s.Namespace, s.Name, s.Class)
			continue
		}
		var ips, pools []string
		for _, a := range s.IPs {
			ips = append(ips, a.IP)
			pools = append(pools, orDash(a.Pool))
		}
		event := "-"
		if len(s.Events) > 0 {
			e := s.Events[0]
			event = fmt.Sprintf("%s %s (%s ago)", e.Type, e.Reason, age(now, e.Time))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Namespace, s.Name, orPending(strings.Join(ips, ",")),
			orDash(strings.Join(dedupe(pools), ",")), orDash(announcedBy(s.Announcers)), allocatedText(s), event)
	}
	return tw.Flush()
}

// WriteStatusDetail writes everything status knows of one Service.
func WriteStatusDetail(w io.Writer, s ServiceStatus, now time.Time) error {
	fmt.Fprintf(w, "Service:      %s/%s\n", s.Namespace, s.Name)
	if !s.Ours {
		_, err := fmt.Fprintf(w, "Not ironlb's: its loadBalancerClass is %q.\n", s.Class)
		return err
	}
	if len(s.IPs) == 0 {
		fmt.Fprintln(w, "External IPs: <pending>")
	} else {
		fmt.Fprintln(w, "External IPs:")
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		for _, a := range s.IPs {
			fmt.Fprintf(tw, "  %s\tpool %s\n", a.IP, orDash(a.Pool))
		}
		tw.Flush()
	}
	if s.Request != "" {
		fmt.Fprintf(w, "Requested:    %s\n", s.Request)
	}
	fmt.Fprintf(w, "Allocated:    %s\n", allocatedText(s))
	if s.Message != "" {
		fmt.Fprintf(w, "              %s\n", s.Message)
	}
	if len(s.Announcers) == 0 {
		fmt.Fprintln(w, "Announced by: nobody")
	} else {
		fmt.Fprintln(w, "Announced by:")
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		for _, a := range s.Announcers {
			via := "interfaces " + strings.Join(a.Interfaces, ",")
			if a.Mode == string(v1alpha1.AnnouncementBGP) {
				via = "peers " + strings.Join(a.Peers, ",")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Node, a.Mode, strings.Join(a.IPs, ","), via)
		}
		tw.Flush()
	}
	if len(s.Events) == 0 {
		_, err := fmt.Fprintln(w, "Events:       none")
		return err
	}
	fmt.Fprintln(w, "Events:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range s.Events {
		fmt.Fprintf(tw, "  %s ago\t%s\t%s\t%s\n", age(now, e.Time), e.Type, e.Reason, e.Message)
	}
	return tw.Flush()
}

// requestText describes what the Service asks for, through config.RequestFor.
func requestText(svc *corev1.Service) string {
	req, err := config.RequestFor(svc, nil)
	if err != nil {
		return "malformed: " + err.Error()
	}
	var parts []string
	if len(req.IPs) > 0 {
		parts = append(parts, "addresses "+joinIPs(req.IPs))
	}
	if req.Pool != "" {
		parts = append(parts, "pool "+req.Pool)
	}
	if req.SharingKey != "" {
		parts = append(parts, "sharing key "+req.SharingKey)
	}
	if req.Policy != allocator.SingleStack {
		parts = append(parts, req.Policy.String())
	}
	return strings.Join(parts, ", ")
}

func announcedBy(as []Announcer) string {
	var parts []string
	for _, a := range as {
		via := strings.Join(a.Interfaces, ",")
		if a.Mode == string(v1alpha1.AnnouncementBGP) {
			via = "BGP:" + strings.Join(a.Peers, ",")
		}
		parts = append(parts, a.Node+"("+via+")")
	}
	return strings.Join(parts, " ")
}

func allocatedText(s ServiceStatus) string {
	switch s.Allocated {
	case "":
		return "no condition yet"
	case "True":
		return s.Reason
	}
	return "False: " + s.Reason
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// age prints a duration as kubectl does, roughly: 5s, 3m, 2h, 4d.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orPending(s string) string {
	if s == "" {
		return "<pending>"
	}
	return s
}
