// Package health serves the healthCheckNodePort of LoadBalancer Services with
// externalTrafficPolicy Local, as kube-proxy does: an external load balancer probes each node
// on that port and sends traffic only to nodes that answer 200, the nodes with a ready endpoint
// of the Service.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Service is the health check of one Service on this node.
type Service struct {
	Namespace, Name string
	// Port is spec.healthCheckNodePort.
	Port uint16
	// LocalEndpoints counts this node's ready endpoints (distinct addresses, over all ports)
	// per network, "tcp4" and "tcp6": the port is served on 0.0.0.0 and [::] for the families
	// listed, and each answers with its family's count, as kube-proxy's per-family proxies do.
	LocalEndpoints map[string]int
}

func (s *Service) key() string { return s.Namespace + "/" + s.Name }

// Server runs one HTTP server per Service and family. It is safe for concurrent use.
type Server struct {
	log     *slog.Logger
	healthy func() bool // kube-proxy's serviceProxyHealthy: the rules are up to date

	mu       sync.Mutex
	services map[string]*instance
}

type instance struct {
	svc     Service // LocalEndpoints updated under Server.mu
	servers []*http.Server
}

// New returns a Server that serves nothing until Sync. healthy tells whether the datapath is
// in sync; when it is not, every health check answers 503, as kube-proxy's do.
func New(log *slog.Logger, healthy func() bool) *Server {
	return &Server{log: log, healthy: healthy, services: map[string]*instance{}}
}

// Sync serves the given Services' health checks and stops the others. A port that cannot be
// opened (in use) is reported in the error and tried again at the next Sync; the others are
// served regardless.
func (s *Server) Sync(ctx context.Context, svcs []Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]Service{}
	for _, svc := range svcs {
		want[svc.key()] = svc
	}
	for k, inst := range s.services {
		if w, ok := want[k]; !ok || w.Port != inst.svc.Port || !sameNetworks(w.LocalEndpoints, inst.svc.LocalEndpoints) {
			inst.close()
			delete(s.services, k)
		}
	}
	var errs []error
	for k, svc := range want {
		if inst := s.services[k]; inst != nil {
			inst.svc.LocalEndpoints = svc.LocalEndpoints
			continue
		}
		inst, err := s.listen(ctx, svc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.services[k] = inst
	}
	return errors.Join(errs...)
}

// Close stops every health check.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, inst := range s.services {
		inst.close()
		delete(s.services, k)
	}
}

func sameNetworks(a, b map[string]int) bool {
	for n := range a {
		if _, ok := b[n]; !ok {
			return false
		}
	}
	return len(a) == len(b)
}

func (s *Server) listen(ctx context.Context, svc Service) (*instance, error) {
	inst := &instance{svc: svc}
	networks := make([]string, 0, len(svc.LocalEndpoints))
	for n := range svc.LocalEndpoints {
		networks = append(networks, n)
	}
	slices.Sort(networks)
	for _, network := range networks {
		host := "0.0.0.0"
		if network == "tcp6" {
			host = "::"
		}
		ln, err := new(net.ListenConfig).Listen(ctx, network, net.JoinHostPort(host, strconv.Itoa(int(svc.Port))))
		if err != nil {
			inst.close()
			return nil, fmt.Errorf("serving the health check of Service %s on port %d (spec.healthCheckNodePort): %w", svc.key(), svc.Port, err)
		}
		srv := &http.Server{Handler: s.handler(svc.key(), network), ReadHeaderTimeout: 5 * time.Second}
		inst.servers = append(inst.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Warn("health check server stopped", "service", svc.key(), "port", svc.Port, "err", err)
			}
		}()
	}
	s.log.Info("serving health check", "service", svc.key(), "port", svc.Port, "networks", networks)
	return inst, nil
}

func (inst *instance) close() {
	for _, srv := range inst.servers {
		_ = srv.Close()
	}
}

// handler answers like kube-proxy's health check: 200 when the node has a ready endpoint of the
// Service and the rules are in sync, 503 otherwise, with the count in a JSON body and in
// X-Load-Balancing-Endpoint-Weight.
func (s *Server) handler(key, network string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		inst := s.services[key]
		var svc Service
		if inst != nil {
			svc = inst.svc
		}
		count := svc.LocalEndpoints[network]
		s.mu.Unlock()
		if inst == nil {
			return // closing
		}
		healthy := s.healthy()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(count))
		if count > 0 && healthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": %v\n}",
			svc.Namespace, svc.Name, count, healthy)
	})
}
