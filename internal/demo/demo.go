// Package demo is what a demo workload answers: the pod's name and the client address it saw,
// as one line, over HTTP on TCP and per datagram on UDP: the ironlb-demo image (cmd/ironlb-demo)
// answers with it and the end-to-end tests read it.
package demo

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Answer is the line a pod named pod sends back to a client at address client.
func Answer(pod string, client net.Addr) string {
	return fmt.Sprintf("pod=%s client=%s\n", pod, client)
}

// ParseAnswer splits an answer ("pod=NAME client=ADDR") into its two fields.
func ParseAnswer(s string) (pod, client string, err error) {
	_, err = fmt.Sscanf(strings.TrimSpace(s), "pod=%s client=%s", &pod, &client)
	if err != nil {
		return "", "", fmt.Errorf("not a pod answer: %q", s)
	}
	return pod, client, nil
}

// Handler answers every HTTP request with Answer for the connection's remote address.
func Handler(pod string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		if err != nil {
			http.Error(w, fmt.Sprintf("remote address %q: %v", r.RemoteAddr, err), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, Answer(pod, addr))
	})
}

// ServeUDP answers each datagram on pc with Answer for its sender until pc is closed, and
// returns the error that ended reading.
func ServeUDP(pc net.PacketConn, pod string) error {
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		_, _ = pc.WriteTo([]byte(Answer(pod, from)), from)
	}
}
