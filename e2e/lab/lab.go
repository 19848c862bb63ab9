// Package lab builds the ironlb test lab on one machine, as root: a real cluster (etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler; Kubernetes nodes as network
// namespaces on a shared LAN bridge, each with its own containerd and kubelet running real pods;
// ironlb installed from its Helm chart), a BGP router (BIRD 2, and FRR when asked) peering with
// every node, and clients on the LAN and behind the router. The e2e tests and the `ironlb-lab`
// command share it. See addresses.go for the address plan and the README for the picture.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/images"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Namespace names.
const (
	NSCtl       = Prefix + "ctl"    // etcd, kube-apiserver, the controller; management bridge
	NSLAN       = Prefix + "lan"    // the LAN switch (a bridge, no address)
	NSRouter    = Prefix + "router" // BIRD; routes between the LAN and the external net
	NSFRR       = Prefix + "frr"    // FRR, a second router on the LAN (Config.FRR)
	NSExtClient = Prefix + "ext"    // a client behind the router
	NSLANClient = Prefix + "client" // a client on the LAN
)

// Config describes the lab to build. The zero value builds the default lab.
type Config struct {
	// Nodes is the number of Kubernetes nodes; default 3, at most MaxNodes.
	Nodes int
	// Dir holds the lab's files (API server data, kubeconfigs, router configs, logs).
	// Default: a new directory under os.TempDir().
	Dir string
	// FRR also starts an FRR router on the LAN, peering with every node.
	FRR bool
	// FRRASN is FRR's AS number: RouterASN (eBGP, the default) or NodeASN for iBGP, where
	// local preference is carried.
	FRRASN uint32
	// KubeProxy also runs kube-proxy (nftables mode) on every node.
	KubeProxy bool
	// ImageDir receives the images a real node imports, as docker-archive tarballs built from
	// the working tree as `make images` does (internal/images: only what changed is rebuilt);
	// default ${IRONLB_CACHE:-~/.cache/ironlb}/images.
	ImageDir string
	// RepoRoot locates the CRDs (charts/ironlb/crds); default: found from the working directory.
	RepoRoot string
	// Log receives progress; default slog.Default().
	Log *slog.Logger
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	Config Config
	// API is the API server (running in NSCtl).
	API *apiserver.Server
	// RESTConfig reaches the API server from the lab's own process; Client is built from it.
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	// Kubeconfig is for tools on this host (kubectl): it points at a loopback proxy that lives as
	// long as the lab's process.
	Kubeconfig string
	// NodeKubeconfig is for processes inside node namespaces (speakers): it points at the API
	// server's management address.
	NodeKubeconfig string
	Nodes          []*Node
	Routers        []*Router

	log     *slog.Logger
	proxy   net.Listener
	mu      sync.Mutex
	pods    map[string]*Pod // by namespace/name
	podSeq  map[int]int     // next pod index per node
	closers []func()
	lock    *os.File
	images  []string // the tarballs real nodes import
}

// Node is a Kubernetes node: a network namespace on the LAN.
type Node struct {
	Index  int    // 1-based
	Name   string // Kubernetes node name, e.g. node1
	NetNS  string
	LANIf  string // the LAN interface inside NetNS
	LAN4   netip.Addr
	LAN6   netip.Addr
	Mgmt   netip.Addr
	Pod4   netip.Prefix
	Pod6   netip.Prefix
	MAC    net.HardwareAddr // of LANIf
	ASN    uint32
	labDir string
	// runtime is the node's containerd and kubelet.
	runtime *nodeRuntime
}

// Up builds the lab. It first removes whatever a previous, crashed run left behind. On error
// everything built so far is torn down again.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: must run as root (network namespaces, veth, bridges)")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Nodes > MaxNodes {
		return nil, fmt.Errorf("lab: Nodes = %d, want 1..%d", cfg.Nodes, MaxNodes)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RepoRoot == "" {
		if cfg.RepoRoot, err = findRepoRoot(); err != nil {
			return nil, err
		}
	}
	if cfg.ImageDir == "" {
		if cfg.ImageDir, err = images.DefaultDir(); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "ironlb-lab-"); err != nil {
			return nil, fmt.Errorf("lab: creating work dir: %w", err)
		}
	}
	l := &Lab{Config: cfg, log: cfg.Log, pods: map[string]*Pod{}, podSeq: map[int]int{}}
	// One lab per machine at a time: the namespace names are fixed. Tests in several packages
	// queue here; the kernel drops the lock when a holder dies.
	if l.lock, err = lock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Down(context.WithoutCancel(ctx))
		}
	}()
	start := time.Now()
	if err := Cleanup(ctx); err != nil {
		return nil, fmt.Errorf("lab: cleaning up a previous run: %w", err)
	}
	if err := l.buildNetwork(ctx); err != nil {
		return nil, err
	}
	l.log.Info("lab network up", "nodes", cfg.Nodes, "elapsed", time.Since(start).Round(time.Millisecond))

	// What does not depend on the API server starts next to it: the routers and each node's
	// containerd. The images build (or are found up to date) once the API server is ready: a
	// build after a source change takes both cores for a while, and the API server has a
	// deadline to be ready. Each node imports them as soon as they are built, and starts its
	// kubelet once the control plane is up, without waiting for the imports.
	routerErr := make(chan error, 1)
	go func() { routerErr <- l.startRouters(ctx) }()
	imagesBuilt, apiUp := newStep(), newStep()
	var nodes errgroup.Group
	for _, n := range l.Nodes {
		nodes.Go(func() error { return l.startRealNode(ctx, n, imagesBuilt, apiUp) })
	}
	apiErr := l.startAPIServer(ctx)
	if apiErr == nil {
		l.log.Info("lab API server ready", "kubeconfig", l.Kubeconfig, "elapsed", time.Since(start).Round(time.Millisecond))
		go func() { imagesBuilt.finish(l.buildImages(ctx, start)) }()
		apiErr = l.startControlPlane(ctx)
	} else {
		imagesBuilt.finish(errAborted)
	}
	apiUp.finish(apiErr)
	// Everything started is waited for before an error returns: Down stops it all.
	nodesErr := nodes.Wait()
	imagesErr := imagesBuilt.wait(context.WithoutCancel(ctx))
	if errors.Is(nodesErr, errAborted) {
		nodesErr = nil // the step it waited for failed, and says why
	}
	if errors.Is(imagesErr, errAborted) {
		imagesErr = nil
	}
	err = errors.Join(apiErr, <-routerErr, nodesErr, imagesErr)
	if err != nil {
		return nil, err
	}
	if err := l.finishCluster(ctx, start); err != nil {
		return nil, err
	}
	l.log.Info("lab up", "dir", cfg.Dir, "elapsed", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// Down stops everything the lab started and removes its namespaces. Safe to call twice.
func (l *Lab) Down(ctx context.Context) {
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if l.proxy != nil {
		l.proxy.Close()
	}
	if l.API != nil {
		l.API.Stop()
	}
	if err := Cleanup(ctx); err != nil {
		l.log.Error("lab teardown", "err", err)
	}
	if l.lock != nil {
		l.lock.Close() // releases the flock
		l.lock = nil
	}
}

// buildImages builds the images (internal/images: what changed in the working tree) for the
// nodes to import.
func (l *Lab) buildImages(ctx context.Context, start time.Time) error {
	built, err := images.Build(ctx, images.Options{Root: l.Config.RepoRoot, Dir: l.Config.ImageDir, Log: l.log})
	if err != nil {
		return fmt.Errorf("lab: building the images: %w", err)
	}
	for _, b := range built {
		l.images = append(l.images, b.Path)
	}
	l.log.Info("lab images built", "dir", l.Config.ImageDir, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// errAborted is what a goroutine returns when a step it waited for failed.
var errAborted = errors.New("lab: aborted: a step it waited for failed")

// step is something that goroutines wait for, done once with its error.
type step struct {
	done chan struct{}
	err  error
}

func newStep() *step { return &step{done: make(chan struct{})} }

func (s *step) finish(err error) {
	s.err = err
	close(s.done)
}

// wait returns the step's error once it is done, or ctx's.
func (s *step) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// after waits for s when it is not nil, and returns errAborted if it failed.
func (s *step) after(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.wait(ctx); err != nil {
		return errAborted
	}
	return nil
}

// finishCluster waits until every node is Ready and sets what a cluster's controllers would.
func (l *Lab) finishCluster(ctx context.Context, start time.Time) error {
	if err := l.waitNodesReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	// The nodes' pod subnets, as a cluster's IPAM (kube-controller-manager's
	// --allocate-node-cidrs) would set them; here they are fixed by each node's CNI config.
	for _, n := range l.Nodes {
		patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q,%q]}}`, n.Pod4, n.Pod4, n.Pod6)
		if _, err := l.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("lab: setting the pod subnets of %s: %w", n.Name, err)
		}
	}
	// kube-controller-manager's root CA publisher writes this first thing; pods with a
	// ServiceAccount token wait for it.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := l.Client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("lab: kube-controller-manager did not publish kube-root-ca.crt (log: %s): %w", l.logPath("kube-controller-manager"), err)
	}
	l.log.Info("lab nodes Ready", "elapsed", time.Since(start).Round(time.Millisecond))
	return l.EnsureNamespace(ctx, "default")
}

// lockPath serialises labs on one machine.
const lockPath = "/run/ironlb-lab.lock"

// lock waits until no other lab runs on this machine and returns the locked file; closing it
// unlocks.
func lock() (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab: opening %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: locking %s: %w", lockPath, err)
	}
	return f, nil
}

// WithLock runs fn while no lab runs on this machine: a test that checks what its finished lab
// left behind must not see the next lab (another package's test) starting.
func WithLock(fn func()) error {
	f, err := lock()
	if err != nil {
		return err
	}
	defer f.Close()
	fn()
	return nil
}

func (l *Lab) onDown(f func()) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// Node returns the node with the given Kubernetes name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Exec runs a command in a namespace of the lab; see the package-level Exec.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	return Exec(ctx, ns, argv...)
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "charts", "ironlb", "crds")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lab: cannot find the repository root (charts/ironlb/crds) above the working directory")
		}
		dir = parent
	}
}
