package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// HTTPGet fetches url from inside network namespace ns (a client, a node or a pod) and returns
// the body. Each call opens a new connection, so successive calls may reach different endpoints.
func HTTPGet(ctx context.Context, ns, url string, timeout time.Duration) (string, error) {
	return HTTPGetFrom(ctx, ns, netip.Addr{}, url, timeout)
}

// HTTPGetFrom is HTTPGet from source address src, one of ns's addresses (the zero Addr: the
// one the kernel picks).
func HTTPGetFrom(ctx context.Context, ns string, src netip.Addr, url string, timeout time.Duration) (string, error) {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return DialFrom(ctx, ns, src, addr)
			},
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", url, ns, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: reading body: %w", url, ns, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s from %s: %s", url, ns, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}
