package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReap: an exited child stays a zombie until reap collects it.
func TestReap(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for !isZombie(t, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d never exited", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := reap(); n != 1 {
		t.Errorf("reap collected %d children; want 1", n)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("child %d still in /proc after reap (%v)", pid, err)
	}
	if err := cmd.Wait(); err == nil || !errors.Is(err, syscall.ECHILD) {
		t.Errorf("Wait after reap: %v; want ECHILD (already collected)", err)
	}
	if n := reap(); n != 0 {
		t.Errorf("reap with no children collected %d", n)
	}
}

func isZombie(t *testing.T, pid int) bool {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ...
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}
