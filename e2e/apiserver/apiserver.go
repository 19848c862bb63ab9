// Package apiserver runs a real etcd and kube-apiserver as child processes, for tests and the
// lab. Nothing here is faked: the binaries are Debian's etcd and a kube-apiserver built from the
// Go module proxy by hack/build-kube.sh, so admission (OpenAPI + CEL), RBAC, status subresources
// and watches behave as in a cluster. There is no controller-manager, scheduler or kubelet.
package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultKubeVersion is the Kubernetes version the project builds and tests against; it matches
// the minor of the k8s.io/client-go in go.mod.
const DefaultKubeVersion = "v1.37.1"

// AdminToken is the bearer token of the lab's cluster administrator (group system:masters).
// The server only ever listens inside this machine (loopback or a lab namespace).
const AdminToken = "ironlb-lab-admin"

// Options says how to start the server. The zero value of every field but Dir is usable.
type Options struct {
	// Dir holds certificates, etcd's data, logs and the kubeconfig. Required.
	Dir string
	// KubeVersion selects the cached binaries; default DefaultKubeVersion.
	KubeVersion string
	// BinDir holds kube-apiserver; default $IRONLB_CACHE or ~/.cache/ironlb, then /<version>.
	BinDir string
	// Address the API server binds to and advertises; default 127.0.0.1.
	Address netip.Addr
	// SecurePort, EtcdPort and EtcdPeerPort; 0 picks a free port on Address (only meaningful
	// when the server runs in the caller's network namespace).
	SecurePort, EtcdPort, EtcdPeerPort int
	// ExecPrefix runs both processes under a wrapper, e.g. {"ip", "netns", "exec", "ilb-ctl"}.
	ExecPrefix []string
	// ServiceCIDR for ClusterIPs, one per family; default dual-stack 198.18.0.0/16 (room for
	// the 5,000-Service benchmarks) and 2001:db8:18::/112.
	ServiceCIDR string
	// CRDDir, when set, holds CustomResourceDefinition YAML applied once the server is ready.
	CRDDir string
	// ExtraArgs are appended to kube-apiserver's flags.
	ExtraArgs []string
	// Dial, when set, opens connections to the server (e.g. into the namespace it runs in); it
	// becomes Server.Config.Dial.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// URL of the API server, e.g. https://127.0.0.1:39017.
	URL string
	// Config is an admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file for URL.
	Kubeconfig string
	// Dir is Options.Dir.
	Dir string

	procs []*proc
}

// proc is a child process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// BinDir returns where hack/build-kube.sh caches the binaries of a Kubernetes version.
func BinDir(version string) string {
	root := os.Getenv("IRONLB_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		root = filepath.Join(home, ".cache", "ironlb")
	}
	return filepath.Join(root, version)
}

// Start starts etcd and kube-apiserver and returns once the API server is ready and the CRDs in
// Options.CRDDir are established. On error everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.Dir == "" {
		return nil, errors.New("apiserver: Options.Dir is required")
	}
	if o.KubeVersion == "" {
		o.KubeVersion = DefaultKubeVersion
	}
	if o.BinDir == "" {
		o.BinDir = BinDir(o.KubeVersion)
	}
	if !o.Address.IsValid() {
		o.Address = netip.MustParseAddr("127.0.0.1")
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = "198.18.0.0/16,2001:db8:18::/112"
	}
	apiserverBin := filepath.Join(o.BinDir, "kube-apiserver")
	if _, err := os.Stat(apiserverBin); err != nil {
		return nil, fmt.Errorf("apiserver: %s is missing (run hack/install-deps.sh): %w", apiserverBin, err)
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("apiserver: etcd not found (run hack/install-deps.sh): %w", err)
	}
	for _, p := range []*int{&o.SecurePort, &o.EtcdPort, &o.EtcdPeerPort} {
		if *p == 0 {
			if *p, err = freePort(o.Address); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("apiserver: creating %s: %w", o.Dir, err)
	}
	s := &Server{Dir: o.Dir, URL: "https://" + net.JoinHostPort(o.Address.String(), strconv.Itoa(o.SecurePort))}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	etcdURL := "http://" + net.JoinHostPort(o.Address.String(), strconv.Itoa(o.EtcdPort))
	etcdPeer := "http://" + net.JoinHostPort(o.Address.String(), strconv.Itoa(o.EtcdPeerPort))
	if err := s.start(o, "etcd", etcdBin,
		"--name=ironlb", "--data-dir="+filepath.Join(o.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=ironlb="+etcdPeer, "--log-level=warn",
	); err != nil {
		return nil, err
	}

	saKey := filepath.Join(o.Dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	tokens := filepath.Join(o.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(AdminToken+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("apiserver: writing token file: %w", err)
	}
	certDir := filepath.Join(o.Dir, "certs")
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + o.Address.String(),
		"--advertise-address=" + o.Address.String(),
		"--secure-port=" + strconv.Itoa(o.SecurePort),
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + o.ServiceCIDR,
		"--service-node-port-range=30000-32767",
		"--allow-privileged=true",
		"--profiling=false",
	}
	if o.Address.IsLoopback() {
		// 1.37 refuses to reconcile the kubernetes Service's endpoints to a loopback address.
		args = append(args, "--endpoint-reconciler-type=none")
	}
	args = append(args, o.ExtraArgs...)
	if err := s.start(o, "kube-apiserver", apiserverBin, args...); err != nil {
		return nil, err
	}

	caPEM, err := waitReady(ctx, s.URL, filepath.Join(certDir, "apiserver.crt"), s.procs[len(s.procs)-1], o.Dial, 60*time.Second)
	if err != nil {
		return nil, fmt.Errorf("apiserver: waiting for readiness (log: %s): %w", filepath.Join(o.Dir, "kube-apiserver.log"), err)
	}
	s.Config = &rest.Config{
		Host:            s.URL,
		BearerToken:     AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		// For the tests' own fixtures and observers. ironlb's components never run at these
		// limits: controller.New and speaker.New apply their Config's (kubeclient.New).
		QPS:   200,
		Burst: 400,
		Dial:  o.Dial,
	}
	s.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := WriteKubeconfig(s.Kubeconfig, s.URL, "", caPEM, AdminToken); err != nil {
		return nil, err
	}
	if o.CRDDir != "" {
		if err := ApplyCRDs(ctx, s.Config, o.CRDDir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// start runs one child with its output in Dir/<name>.log. Children die with the process that
// started them (Pdeathsig), so a test binary killed by a timeout leaves no server behind.
func (s *Server) start(o Options, name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(o.Dir, name+".log"))
	if err != nil {
		return fmt.Errorf("apiserver: creating log for %s: %w", name, err)
	}
	argv := append(append(append([]string{}, o.ExecPrefix...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("apiserver: starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	s.procs = append(s.procs, p)
	return nil
}

// Stop kills the API server, then etcd, and waits for them to exit. It is safe to call twice.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	s.procs = nil
}

// WriteKubeconfig writes a kubeconfig for url with the given CA and bearer token. serverName,
// when set, is the name to verify the server's certificate against (for a proxied address).
func WriteKubeconfig(path, url, serverName string, caPEM []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["ironlb-lab"] = &clientcmdapi.Cluster{Server: url, TLSServerName: serverName, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["ironlb-lab"] = &clientcmdapi.Context{Cluster: "ironlb-lab", AuthInfo: "admin"}
	cfg.CurrentContext = "ironlb-lab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("apiserver: writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func waitReady(ctx context.Context, url, certFile string, p *proc, dial dialFunc, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("kube-apiserver exited: %s", p.cmd.ProcessState)
		default:
		}
		caPEM, err := os.ReadFile(certFile)
		if err == nil {
			lastErr = probe(ctx, url, caPEM, dial)
			if lastErr == nil {
				return caPEM, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func probe(ctx context.Context, url string, caPEM []byte, dial dialFunc) error {
	rt, err := rest.TransportFor(&rest.Config{Host: url, BearerToken: AdminToken, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, Dial: dial})
	if err != nil {
		return fmt.Errorf("building transport: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt, Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("apiserver: generating service account key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return fmt.Errorf("apiserver: writing service account key: %w", err)
	}
	return nil
}

func freePort(addr netip.Addr) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
	if err != nil {
		return 0, fmt.Errorf("apiserver: finding a free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
