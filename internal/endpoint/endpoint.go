// Package endpoint serves a component's /metrics, /healthz and /readyz.
package endpoint

import (
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics from gatherer, /healthz (always ok while the process serves) and
// /readyz (ok once ready is true).
func Handler(gatherer prometheus.Gatherer, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve starts serving Handler on addr in the background and returns a function that stops
// it; an empty addr serves nothing. A failure to listen is logged, not fatal: the component
// works without its metrics.
func Serve(addr string, gatherer prometheus.Gatherer, ready *atomic.Bool, log *slog.Logger) (stop func()) {
	if addr == "" {
		return func() {}
	}
	srv := &http.Server{Addr: addr, Handler: Handler(gatherer, ready), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint", "addr", addr, "err", err)
		}
	}()
	return func() { _ = srv.Close() }
}
