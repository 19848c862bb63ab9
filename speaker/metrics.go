package speaker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the speaker's Prometheus metrics; it is also the announcer's observer.
type metrics struct {
	owned      prometheus.Gauge
	plan       prometheus.Histogram
	requests   *prometheus.CounterVec
	replies    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
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
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_l2_requests_total", Help: "ARP requests and neighbour solicitations seen for owned IPs, by protocol and interface.",
		}, []string{"protocol", "interface"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_l2_replies_total", Help: "ARP replies and neighbour advertisements sent, by protocol and interface.",
		}, []string{"protocol", "interface"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_l2_gratuitous_total", Help: "Gratuitous ARPs and unsolicited neighbour advertisements sent, by protocol and interface.",
		}, []string{"protocol", "interface"}),
	}
	for _, c := range []prometheus.Collector{m.owned, m.plan, m.requests, m.replies, m.gratuitous} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
