// Command ironlb-demo is the lab's demo workload (image ironlb.local/demo:dev): every TCP port
// answers HTTP and every UDP port answers each datagram with one line, "pod=<$POD_NAME>
// client=<address it saw>" (internal/demo), so a test sees which pod answered and whether the
// client address survived forwarding.
//
// A health port serves GET /healthz (always 200) and GET /readyz (200 while ready, else 503);
// POST /readyz?ready=false (or true) flips readiness, as a test does to make a pod unready.
// On SIGTERM it turns unready, keeps serving for -shutdown-delay (while the endpoint goes away
// everywhere), then stops accepting and finishes the requests in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/internal/demo"
)

func main() {
	tcp := flag.String("tcp", "8080", "comma-separated TCP ports answering HTTP (empty: none)")
	udp := flag.String("udp", "", "comma-separated UDP ports answering each datagram (empty: none)")
	healthPort := flag.Int("health-port", 8081, "port of /healthz and /readyz (0: none)")
	shutdownDelay := flag.Duration("shutdown-delay", 5*time.Second, "how long to keep serving, unready, after SIGTERM")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *tcp, *udp, *healthPort, *shutdownDelay); err != nil {
		fmt.Fprintln(os.Stderr, "ironlb-demo:", err)
		stop()
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down as SIGTERM asks.
func run(ctx context.Context, log *slog.Logger, tcp, udp string, healthPort int, shutdownDelay time.Duration) error {
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no $POD_NAME and no host name: %w", err)
		}
		pod = h
	}
	tcpPorts, err := ports("-tcp", tcp)
	if err != nil {
		return err
	}
	udpPorts, err := ports("-udp", udp)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	ready.Store(true)
	var servers []*http.Server
	errs := make(chan error, len(tcpPorts)+len(udpPorts)+1)
	serveHTTP := func(port int, h http.Handler) error {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("listening on tcp/%d: %w", port, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serving tcp/%d: %w", port, err)
			}
		}()
		return nil
	}
	for _, port := range tcpPorts {
		if err := serveHTTP(port, demo.Handler(pod)); err != nil {
			return err
		}
	}
	for _, port := range udpPorts {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("listening on udp/%d: %w", port, err)
		}
		defer pc.Close()
		go func() {
			if err := demo.ServeUDP(pc, pod); !errors.Is(err, net.ErrClosed) {
				errs <- fmt.Errorf("serving udp/%d: %w", port, err)
			}
		}()
	}
	if healthPort != 0 {
		if err := serveHTTP(healthPort, healthHandler(&ready)); err != nil {
			return err
		}
	}
	log.Info("serving", "pod", pod, "tcp", tcpPorts, "udp", udpPorts, "healthPort", healthPort)

	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	ready.Store(false)
	log.Info("terminating: unready, still serving", "for", shutdownDelay)
	time.Sleep(shutdownDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
	}
	log.Info("stopped")
	return nil
}

// healthHandler serves /healthz and /readyz; POST /readyz?ready=BOOL sets readiness.
func healthHandler(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /readyz", func(w http.ResponseWriter, r *http.Request) {
		v, err := strconv.ParseBool(r.URL.Query().Get("ready"))
		if err != nil {
			http.Error(w, "query parameter ready: want true or false", http.StatusBadRequest)
			return
		}
		ready.Store(v)
		fmt.Fprintln(w, "ready="+strconv.FormatBool(v))
	})
	return mux
}

// ports parses a comma-separated port list of the named flag.
func ports(flagName, list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s: %q is not a port (1-65535)", flagName, f)
		}
		out = append(out, p)
	}
	return out, nil
}
