package speaker

import (
	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the speaker's own Prometheus metrics; l2Collector adds the announcer's counters.
type metrics struct {
	owned  prometheus.Gauge
	plan   prometheus.Histogram
	events *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_speaker_l2_owned_ips", Help: "External IPs this node owns and answers ARP/NDP for.",
		}),
		plan: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ironlb_speaker_plan_duration_seconds", Help: "Time to plan and apply this node's announcements.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_watch_events_total",
			Help: "Watch events by resource and by what they did: sync (an add, a delete, or an update of something the speaker reads) or ignored (an update of nothing it reads).",
		}, []string{"resource", "result"}),
	}
	for _, c := range []prometheus.Collector{m.owned, m.plan, m.events} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var (
	l2Requests   = prometheus.NewDesc("ironlb_speaker_l2_requests_total", "ARP requests and neighbour solicitations received, by interface and protocol.", []string{"interface", "protocol"}, nil)
	l2Replies    = prometheus.NewDesc("ironlb_speaker_l2_replies_total", "ARP replies and solicited neighbour advertisements sent for owned IPs.", []string{"interface", "protocol"}, nil)
	l2Gratuitous = prometheus.NewDesc("ironlb_speaker_l2_gratuitous_total", "Gratuitous ARPs and unsolicited neighbour advertisements sent.", []string{"interface", "protocol"}, nil)
	l2Conflicts  = prometheus.NewDesc("ironlb_speaker_l2_conflicts_total", "Announcements by another host of an IP this node owns.", []string{"interface", "protocol"}, nil)
	l2SendErrors = prometheus.NewDesc("ironlb_speaker_l2_send_errors_total", "Frames that could not be sent.", []string{"interface", "protocol"}, nil)
	l2Probes     = prometheus.NewDesc("ironlb_speaker_l2_probes_total", "ARP probes and duplicate address detection solicitations sent before announcing an address.", []string{"interface", "protocol"}, nil)
	l2Conflicted = prometheus.NewDesc("ironlb_speaker_l2_address_conflicts", "Addresses this node owns but does not announce because another host on the network answers for them.", nil, nil)
)

// l2Collector exports the announcer's per-link counters at scrape time.
type l2Collector struct{ a *l2.Announcer }

func (c *l2Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l2Requests, l2Replies, l2Gratuitous, l2Conflicts, l2SendErrors, l2Probes, l2Conflicted} {
		ch <- d
	}
}

func (c *l2Collector) Collect(ch chan<- prometheus.Metric) {
	for link, n := range c.a.Stats() {
		labels := []string{link.Interface, string(link.Protocol)}
		for d, v := range map[*prometheus.Desc]uint64{l2Requests: n.Requests, l2Replies: n.Replies, l2Gratuitous: n.Gratuitous, l2Conflicts: n.Conflicts, l2SendErrors: n.SendErrors, l2Probes: n.Probes} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
	}
	conflicted := 0
	for _, h := range c.a.Held() {
		if h.Conflict {
			conflicted++
		}
	}
	ch <- prometheus.MustNewConstMetric(l2Conflicted, prometheus.GaugeValue, float64(conflicted))
}
