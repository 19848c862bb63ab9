package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/internal/demo"
	"github.com/ironlb/ironlb/internal/nsrun"
)

// containerd is a private containerd (Debian's) for one test: its own root, state, socket and
// runc root in a temporary directory, started inside a network namespace of the test's own, so
// host-network containers live there. It never touches a system containerd.
type containerd struct {
	t      *testing.T
	dir    string
	netns  string
	socket string
	cmd    *exec.Cmd
}

// ctrNamespace is the containerd namespace the kubelet's CRI uses, where the lab imports too.
const ctrNamespace = "k8s.io"

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it runs containerd and containers in a network namespace; run go test as root")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "nft", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
	removeStale(t)
	// A short directory: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{t: t, dir: dir, netns: filepath.Base(dir), socket: filepath.Join(dir, "containerd.sock")}
	t.Cleanup(c.stop)
	run(t, "ip", "netns", "add", c.netns)
	run(t, "ip", "-n", c.netns, "link", "set", "lo", "up")

	// restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and CRI sandboxes fail without
	// it (DESIGN section 8); the sandbox image is ours. ctr itself goes around CRI, but the
	// configuration is the lab's.
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "ironlb.local/pause:dev"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[4]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, filepath.Join(dir, "cni"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// nsenter --net switches only the network namespace: `ip netns exec` would also remount
	// /sys, which hides the cgroup mounts runc needs ("no cgroup mount found in mountinfo").
	c.cmd = exec.Command("nsenter", "--net=/run/netns/"+c.netns, "containerd", "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	owner := fmt.Sprintf("%d %d\n", os.Getpid(), c.cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.ctr(context.Background(), "version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 20s; log:\n%s", c.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *containerd) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	return string(b)
}

// ctr runs ctr against this containerd in the k8s.io namespace.
func (c *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.socket, "--namespace", ctrNamespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// runArgs are `ctr run` flags for a container named id: no cgroups of its own, IO FIFOs and
// runc state in the test's directory.
func (c *containerd) runArgs(id string, flags ...string) []string {
	return append([]string{"run", "--rm", "--runc-root", filepath.Join(c.dir, "runc"), "--fifo-dir", filepath.Join(c.dir, "fifo"), "--cgroup", ""}, flags...)
}

// dirPrefix names the test's directories and network namespaces.
const dirPrefix = "ilbt-img-"

// removeStale removes what a killed run of this test left: for each directory whose test
// process is gone, the processes started from it (containerd, shims), its containers, mounts,
// files and network namespace.
func removeStale(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner"))
		var testPID int
		if err == nil {
			_, err = fmt.Sscan(string(raw), &testPID)
		}
		if err != nil || syscall.Kill(testPID, 0) == nil {
			continue // not ours to judge, or still running
		}
		t.Logf("removing %s, left by test process %d", dir, testPID)
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmdline, err := os.ReadFile(p)
			if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		runcRoot := filepath.Join(dir, "runc", ctrNamespace)
		if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").Output(); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_ = exec.Command("runc", "--root", runcRoot, "delete", "--force", id).Run()
			}
		}
		(&containerd{t: t, dir: dir, netns: filepath.Base(dir)}).stop()
	}
}

// stop kills what is left of the containers, then containerd, and removes its directory and
// network namespace.
func (c *containerd) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := c.ctr(ctx, "task", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
				_, _ = c.ctr(ctx, "task", "delete", "-f", id)
			}
		}
		if out, err := c.ctr(ctx, "containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "containers", "delete", id)
			}
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	// Snapshot mounts of containers that did not go away.
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], c.dir+"/") {
				_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("removing %s: %v", c.dir, err)
	}
	_ = exec.Command("ip", "netns", "del", c.netns).Run()
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// speakerSecurity is the speaker's securityContext in the chart, as ctr flags: read-only root,
// the runtime's default seccomp profile, no new privileges (ctr's default), root with every
// capability of ctr's default set dropped but NET_RAW and NET_ADMIN.
var speakerSecurity = append([]string{"--read-only", "--seccomp"}, dropDefaultCaps("CAP_NET_RAW", "CAP_NET_ADMIN")...)

// dropDefaultCaps returns flags dropping ctr's default capabilities except keep.
func dropDefaultCaps(keep ...string) []string {
	var flags []string
	for _, c := range []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"} {
		flags = append(flags, "--cap-drop", c)
	}
	for _, c := range keep {
		flags = append(flags, "--cap-add", c)
	}
	return flags
}

// TestImagesRunInContainerd imports the four images into a private containerd and runs them:
// the speaker's nft, under the chart's securityContext on the host network, lists the
// namespace's tables and loads the forwarding ruleset, and fails without NET_ADMIN; the
// controller starts and looks for its in-cluster configuration; the demo answers HTTP with its
// pod name and the client's address and exits 0 on SIGTERM; pause exits 0 on SIGTERM.
func TestImagesRunInContainerd(t *testing.T) {
	images := builtImages(t)
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"ironlb-speaker", "ironlb-controller", "demo", "pause"} {
		if _, err := c.ctr(ctx, "images", "import", images[name].Path); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.ctr(ctx, "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range images {
		if !strings.Contains(list, b.Ref+"\n") {
			t.Errorf("image %s not listed after import:\n%s", b.Ref, list)
		}
	}

	t.Run("speaker nft", func(t *testing.T) {
		ref := images["ironlb-speaker"].Ref
		run(t, "ip", "netns", "exec", c.netns, "nft", "add", "table", "inet", "made-outside")
		out, err := c.ctr(ctx, append(c.runArgs("nft-list", append([]string{"--net-host"}, speakerSecurity...)...), ref, "nft-list", NFTBinary, "list", "tables")...)
		if err != nil || !strings.Contains(out, "table inet made-outside") {
			t.Fatalf("nft list tables in the speaker image: %v\n%s\nwant the table made outside in the node's namespace", err, out)
		}

		// The forwarding ruleset of a dual-stack Service, as the speaker's full sync writes it.
		rules, err := filepath.Abs(filepath.Join("..", "..", "forward", "testdata", "dual-stack.golden"))
		if err != nil {
			t.Fatal(err)
		}
		mount := "type=bind,src=" + rules + ",dst=/rules.nft,options=rbind:ro"
		if out, err := c.ctr(ctx, append(c.runArgs("nft-load", append([]string{"--net-host", "--mount", mount}, speakerSecurity...)...), ref, "nft-load", NFTBinary, "-f", "/rules.nft")...); err != nil {
			t.Fatalf("loading the forwarding ruleset in the speaker image: %v\n%s", err, out)
		}
		out, err = c.ctr(ctx, append(c.runArgs("nft-json", append([]string{"--net-host"}, speakerSecurity...)...), ref, "nft-json", NFTBinary, "-j", "list", "tables")...)
		if err != nil || !strings.Contains(out, `"name": "ironlb"`) {
			t.Errorf("nft -j list tables (kube-proxy detection's call) in the speaker image: %v\n%s", err, out)
		}
		if out := run(t, "ip", "netns", "exec", c.netns, "nft", "list", "chain", "inet", "ironlb", "nat-prerouting"); !strings.Contains(out, "jump services") {
			t.Errorf("the table the image loaded, seen from outside:\n%s", out)
		}

		noAdmin := append([]string{"--net-host", "--read-only", "--seccomp"}, dropDefaultCaps("CAP_NET_RAW")...)
		out, err = c.ctr(ctx, append(c.runArgs("nft-noadmin", noAdmin...), ref, "nft-noadmin", NFTBinary, "list", "tables")...)
		if err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("nft without NET_ADMIN: %v\n%s\nwant it refused (else this test proves nothing about the capabilities)", err, out)
		}
	})

	t.Run("controller starts", func(t *testing.T) {
		// The chart's controller: read-only root, every capability dropped, the image's user
		// 65532. Without a ServiceAccount token it fails to configure its client, which
		// shows the entrypoint runs and takes the in-cluster path.
		flags := append([]string{"--read-only", "--seccomp", "--env", "KUBERNETES_SERVICE_HOST=192.0.2.1", "--env", "KUBERNETES_SERVICE_PORT=6443"}, dropDefaultCaps()...)
		out, err := c.ctr(ctx, append(c.runArgs("controller", flags...), images["ironlb-controller"].Ref, "controller")...)
		if err == nil || !strings.Contains(out, "serviceaccount/token") {
			t.Errorf("controller without a token: %v\n%s\nwant it to fail reading the ServiceAccount token", err, out)
		}
	})

	t.Run("demo answers", func(t *testing.T) {
		flags := append([]string{"--net-host", "--read-only", "--seccomp", "--env", "POD_NAME=demo-0"}, dropDefaultCaps()...)
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.socket, "--namespace", ctrNamespace},
			append(c.runArgs("demo", flags...), images["demo"].Ref, "demo")...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		var answer, local string
		deadline := time.Now().Add(20 * time.Second)
		for {
			answer, local, err = httpGetIn(c.netns, "127.0.0.1:8080")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the demo did not answer within 20s: %v\n%s", err, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if pod, client, err := demo.ParseAnswer(answer); err != nil || pod != "demo-0" || client != local {
			t.Errorf("answer %q (%v); want pod demo-0 and client %s", answer, err, local)
		}
		if ready, _, err := httpGetIn(c.netns, "127.0.0.1:8081/readyz"); err != nil || strings.TrimSpace(ready) != "ok" {
			t.Errorf("/readyz: %q %v", ready, err)
		}
		if _, err := c.ctr(ctx, "task", "kill", "--signal", "SIGTERM", "demo"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("demo after SIGTERM: %v; want exit 0\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("demo still running 20s after SIGTERM\n%s", out.String())
		}
	})

	t.Run("pause exits on SIGTERM", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.socket, "--namespace", ctrNamespace},
			append(c.runArgs("pause", "--read-only"), images["pause"].Ref, "pause")...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if list, err := c.ctr(ctx, "task", "ls"); err == nil && strings.Contains(list, "RUNNING") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pause not running within 20s\n%s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case err := <-exited:
			t.Fatalf("pause exited by itself: %v\n%s", err, out.String())
		default:
		}
		if _, err := c.ctr(ctx, "task", "kill", "--signal", "SIGTERM", "pause"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("pause after SIGTERM: %v; want exit 0\n%s", err, out.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("pause still running 10s after SIGTERM")
		}
	})
}

// httpGetIn GETs http://addr from inside network namespace ns and returns the body and the
// local address of the connection.
func httpGetIn(ns, addr string) (body, local string, err error) {
	host, path, _ := strings.Cut(addr, "/")
	var conn net.Conn
	if err := nsrun.Do(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", host, 2*time.Second)
		return err
	}); err != nil {
		return "", "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /"+path+" HTTP/1.0\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return "", "", err
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		return "", "", err
	}
	head, rest, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.0 200") && !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", "", errors.New("response: " + strconv.Quote(string(raw)))
	}
	return rest, conn.LocalAddr().String(), nil
}
