package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/internal/demo"
)

// freePort returns a port that was free on both TCP and UDP a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServe runs the demo on free ports: HTTP and UDP answer with the pod name and the client's
// address, readiness flips on request and turns false on termination while the answers go on
// for the shutdown delay, then everything stops.
func TestServe(t *testing.T) {
	t.Setenv("POD_NAME", "web-0")
	tcpPort, udpPort, healthPort := freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), strconv.Itoa(tcpPort), strconv.Itoa(udpPort), healthPort, time.Second)
	}()
	health := "http://127.0.0.1:" + strconv.Itoa(healthPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(health + "/readyz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health port never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	if _, err := io.WriteString(conn, "GET /anything HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	conn.Close()
	_, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	if pod, client, err := demo.ParseAnswer(body); err != nil || pod != "web-0" || client != local {
		t.Errorf("HTTP answer %q (%v); want pod web-0, client %s", body, err, local)
	}

	uc, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_ = uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := uc.Read(buf)
	if pod, client, perr := demo.ParseAnswer(string(buf[:n])); err != nil || perr != nil || pod != "web-0" || client != uc.LocalAddr().String() {
		t.Errorf("UDP answer %q (%v, %v); want pod web-0, client %s", buf[:n], err, perr, uc.LocalAddr())
	}

	for _, step := range []struct {
		post string
		want int
	}{{"", 200}, {"false", 503}, {"true", 200}} {
		if step.post != "" {
			resp, err := http.Post(health+"/readyz?ready="+step.post, "", nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST ready=%s: %v %v", step.post, resp, err)
			}
			resp.Body.Close()
		}
		if code, _ := get(t, health+"/readyz"); code != step.want {
			t.Errorf("after POST ready=%q: /readyz %d; want %d", step.post, code, step.want)
		}
	}
	if resp, err := http.Post(health+"/readyz?ready=maybe", "", nil); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST ready=maybe: %v %v; want 400", resp, err)
	}

	cancel() // as SIGTERM
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, _ := get(t, health+"/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminating: /readyz still %d; want 503", code)
		}
	}
	if code, body := get(t, "http://127.0.0.1:"+strconv.Itoa(tcpPort)+"/"); code != 200 || !strings.HasPrefix(body, "pod=web-0 ") {
		t.Errorf("terminating, within the delay: %d %q; want still answering", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the shutdown delay")
	}
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort)); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestPortsRejectsBadInput(t *testing.T) {
	for _, in := range []string{"80,x", "0", "65536", "-1"} {
		if _, err := ports("-tcp", in); err == nil || !strings.Contains(err.Error(), "-tcp") {
			t.Errorf("ports(%q): err %v; want one naming -tcp", in, err)
		}
	}
	if got, err := ports("-udp", " 53, 5353 ,"); err != nil || len(got) != 2 || got[0] != 53 || got[1] != 5353 {
		t.Errorf("ports: %v %v; want [53 5353]", got, err)
	}
}
