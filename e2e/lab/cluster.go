package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/ironlb/ironlb/e2e/apiserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// startAPIServer runs etcd and kube-apiserver inside NSCtl on the management bridge, where the
// nodes reach it. The lab's own process reaches it by dialing into NSCtl; tools on the host use a
// loopback proxy (Lab.Kubeconfig).
func (l *Lab) startAPIServer(ctx context.Context) error {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) { return DialIn(ctx, NSCtl, addr) }
	api, err := apiserver.Start(ctx, apiserver.Options{
		Dir:          filepath.Join(l.Config.Dir, "apiserver"),
		Address:      APIServerAddr,
		SecurePort:   APIPort,
		EtcdPort:     2379,
		EtcdPeerPort: 2380,
		ExecPrefix:   []string{"ip", "netns", "exec", NSCtl},
		ServiceCIDR:  ServiceCIDR,
		CRDDir:       filepath.Join(l.Config.RepoRoot, "charts", "ironlb", "crds"),
		Dial:         dial,
		// Real kubelets (logs, exec) are reached at their node's address: node names do not
		// resolve.
		ExtraArgs: []string{"--kubelet-preferred-address-types=InternalIP"},
	})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.API = api
	l.RESTConfig = api.Config
	if l.Client, err = kubernetes.NewForConfig(api.Config); err != nil {
		return fmt.Errorf("lab: client: %w", err)
	}
	caPEM := api.Config.CAData
	l.NodeKubeconfig = filepath.Join(l.Config.Dir, "kubeconfig-node")
	if err := apiserver.WriteKubeconfig(l.NodeKubeconfig, api.URL, "", caPEM, apiserver.AdminToken); err != nil {
		return err
	}

	// The loopback proxy: TLS passes through untouched; the kubeconfig names the server's
	// certificate address as tls-server-name.
	if l.proxy, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("lab: loopback proxy: %w", err)
	}
	go serveProxy(l.proxy, func(ctx context.Context) (net.Conn, error) {
		return DialIn(ctx, NSCtl, net.JoinHostPort(APIServerAddr.String(), strconv.Itoa(APIPort)))
	})
	l.Kubeconfig = filepath.Join(l.Config.Dir, "kubeconfig")
	url := "https://" + l.proxy.Addr().String()
	return apiserver.WriteKubeconfig(l.Kubeconfig, url, APIServerAddr.String(), caPEM, apiserver.AdminToken)
}

func serveProxy(ln net.Listener, dial func(context.Context) (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dial(context.Background())
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
			_, _ = io.Copy(c, up)
			<-done
		}()
	}
}

// EnsureNamespace creates a namespace (if missing) and its default ServiceAccount, which the API
// server requires before it admits Pods and which no controller-manager creates here.
func (l *Lab) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := l.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := l.Client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("lab: default ServiceAccount in %s: %w", name, err)
	}
	return nil
}

// NodeAddrs returns the node's LAN addresses (IPv4 first).
func (n *Node) NodeAddrs() []netip.Addr { return []netip.Addr{n.LAN4, n.LAN6} }

// Kubectl is the path of the kubectl that hack/build-kube.sh built beside kube-apiserver.
func Kubectl() string {
	return filepath.Join(apiserver.BinDir(apiserver.DefaultKubeVersion), "kubectl")
}
