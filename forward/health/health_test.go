package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// freePort returns a TCP port nothing listens on now, on IPv4 and IPv6.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

type answer struct {
	status int
	header http.Header
	body   string
}

func probe(t *testing.T, host string, port uint16) (answer, error) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + "/")
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, err
}

// TestServerAnswersLikeKubeProxy probes the health check over real HTTP on IPv4 and IPv6: 200
// with the family's local endpoint count while there are some and the rules are in sync, 503
// otherwise, kube-proxy's headers and body; the port closes when the Service goes and moves
// when its healthCheckNodePort changes.
func TestServerAnswersLikeKubeProxy(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := New(slog.New(slog.DiscardHandler), healthy.Load)
	t.Cleanup(s.Close)
	ctx := context.Background()
	port := freePort(t)
	svc := Service{Namespace: "shop", Name: "web", Port: port, LocalEndpoints: map[string]int{"tcp4": 2, "tcp6": 1}}
	if err := s.Sync(ctx, []Service{svc}); err != nil {
		t.Fatal(err)
	}

	a, err := probe(t, "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
	if a.status != http.StatusOK || a.body != want {
		t.Errorf("IPv4: %d %q, want 200 %q", a.status, a.body, want)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "X-Load-Balancing-Endpoint-Weight": "2"} {
		if got := a.header.Get(k); got != v {
			t.Errorf("header %s: %q, want %q", k, got, v)
		}
	}
	if a, err := probe(t, "::1", port); err != nil || a.status != http.StatusOK || a.header.Get("X-Load-Balancing-Endpoint-Weight") != "1" {
		t.Errorf("IPv6: %+v, %v; want 200 with weight 1", a, err)
	}

	svc.LocalEndpoints = map[string]int{"tcp4": 0, "tcp6": 1}
	if err := s.Sync(ctx, []Service{svc}); err != nil {
		t.Fatal(err)
	}
	if a, err := probe(t, "127.0.0.1", port); err != nil || a.status != http.StatusServiceUnavailable ||
		a.body != "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 0,\n\t\"serviceProxyHealthy\": true\n}" {
		t.Errorf("no local endpoint: %+v, %v; want 503 with localEndpoints 0", a, err)
	}

	healthy.Store(false)
	if a, err := probe(t, "::1", port); err != nil || a.status != http.StatusServiceUnavailable {
		t.Errorf("rules not in sync: %+v, %v; want 503", a, err)
	}
	healthy.Store(true)

	moved := freePort(t)
	svc.Port = moved
	if err := s.Sync(ctx, []Service{svc}); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(t, "127.0.0.1", port); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("old port after the move: %v, want connection refused", err)
	}
	if a, err := probe(t, "::1", moved); err != nil || a.status != http.StatusOK {
		t.Errorf("new port: %+v, %v; want 200", a, err)
	}

	if err := s.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(t, "::1", moved); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the Service went: %v, want connection refused", err)
	}
}

// TestServerPortInUse: a port taken by someone else is an error naming the Service and field;
// other Services are served, and the next Sync after the port is free serves it.
func TestServerPortInUse(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler), func() bool { return true })
	t.Cleanup(s.Close)
	taken, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(taken.Addr().(*net.TCPAddr).Port)
	other := freePort(t)
	svcs := []Service{
		{Namespace: "a", Name: "busy", Port: port, LocalEndpoints: map[string]int{"tcp4": 1}},
		{Namespace: "a", Name: "free", Port: other, LocalEndpoints: map[string]int{"tcp4": 1}},
	}
	err = s.Sync(context.Background(), svcs)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Sync: %v, want address in use", err)
	}
	for _, w := range []string{"a/busy", "healthCheckNodePort", strconv.Itoa(int(port))} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	if a, err := probe(t, "127.0.0.1", other); err != nil || a.status != http.StatusOK {
		t.Errorf("the other Service: %+v, %v", a, err)
	}
	taken.Close()
	if err := s.Sync(context.Background(), svcs); err != nil {
		t.Fatalf("Sync after the port was freed: %v", err)
	}
	if a, err := probe(t, "127.0.0.1", port); err != nil || a.status != http.StatusOK {
		t.Errorf("after the port was freed: %+v, %v", a, err)
	}
}
