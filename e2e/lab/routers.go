package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// Router is a BGP router on the LAN peering with every node: BIRD 2 in NSRouter (which also
// routes to the external client and installs ECMP routes in its kernel), or FRR in NSFRR (bgpd
// only, no zebra: it learns routes but installs none).
type Router struct {
	Kind  string // "bird" or "frr"
	NetNS string
	LAN4  netip.Addr
	LAN6  netip.Addr
	ASN   uint32
	dir   string
}

var birdConf = template.Must(template.New("bird").Parse(`# Written by the ironlb lab.
log "{{.Dir}}/bird.log" all;
router id {{.LAN4}};
protocol device { scan time 1; }
protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }
protocol kernel k6 { ipv6 { import none; export all; }; merge paths on; }
template bgp node4 {
  local {{.LAN4}} as {{.ASN}};
  hold time 9; connect retry time 1; error wait time 1, 5;
  ipv4 { import all; export none; };
}
template bgp node6 {
  local {{.LAN6}} as {{.ASN}};
  hold time 9; connect retry time 1; error wait time 1, 5;
  ipv6 { import all; export none; };
}
{{range .Nodes}}protocol bgp {{.Name}} from node4 { neighbor {{.LAN4}} as {{.ASN}}; }
protocol bgp {{.Name}}_v6 from node6 { neighbor {{.LAN6}} as {{.ASN}}; }
{{end}}`))

var frrConf = template.Must(template.New("frr").Parse(`! Written by the ironlb lab.
frr defaults traditional
hostname ironlb-frr
log file {{.Dir}}/frr.log
!
router bgp {{.ASN}}
 bgp router-id {{.LAN4}}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 timers bgp 3 9
{{range .Nodes}} neighbor {{.LAN4}} remote-as {{.ASN}}
 neighbor {{.LAN4}} timers connect 1
 neighbor {{.LAN6}} remote-as {{.ASN}}
 neighbor {{.LAN6}} timers connect 1
{{end}} address-family ipv4 unicast
  maximum-paths 16
  maximum-paths ibgp 16
{{range .Nodes}}  neighbor {{.LAN4}} activate
{{end}} exit-address-family
 address-family ipv6 unicast
  maximum-paths 16
  maximum-paths ibgp 16
{{range .Nodes}}  neighbor {{.LAN6}} activate
{{end}} exit-address-family
!
`))

func (l *Lab) startRouters(ctx context.Context) error {
	routers := []*Router{{Kind: "bird", NetNS: NSRouter, LAN4: RouterLAN4, LAN6: RouterLAN6, ASN: RouterASN}}
	if l.Config.FRR {
		asn := l.Config.FRRASN
		if asn == 0 {
			asn = RouterASN
		}
		routers = append(routers, &Router{Kind: "frr", NetNS: NSFRR, LAN4: FRRLAN4, LAN6: FRRLAN6, ASN: asn})
	}
	for _, r := range routers {
		r.dir = filepath.Join(l.Config.Dir, r.Kind)
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if err := r.start(ctx, l); err != nil {
			return err
		}
	}
	l.Routers = routers
	return nil
}

func (r *Router) start(ctx context.Context, l *Lab) error {
	data := struct {
		Dir        string
		LAN4, LAN6 netip.Addr
		ASN        uint32
		Nodes      []*Node
	}{r.dir, r.LAN4, r.LAN6, r.ASN, l.Nodes}
	var conf strings.Builder
	var argv []string
	switch r.Kind {
	case "bird":
		if err := birdConf.Execute(&conf, data); err != nil {
			return fmt.Errorf("lab: rendering bird.conf: %w", err)
		}
		argv = []string{"bird", "-f", "-c", filepath.Join(r.dir, "bird.conf"), "-s", r.socket(), "-P", filepath.Join(r.dir, "bird.pid")}
	case "frr":
		if err := frrConf.Execute(&conf, data); err != nil {
			return fmt.Errorf("lab: rendering bgpd.conf: %w", err)
		}
		argv = []string{"/usr/lib/frr/bgpd", "-Z", "-S", "-n", "-f", filepath.Join(r.dir, "bgpd.conf"),
			"--vty_socket", r.dir, "-i", filepath.Join(r.dir, "bgpd.pid")}
	}
	confPath := filepath.Join(r.dir, map[string]string{"bird": "bird.conf", "frr": "bgpd.conf"}[r.Kind])
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return fmt.Errorf("lab: writing %s: %w", confPath, err)
	}
	logf, err := os.Create(filepath.Join(r.dir, r.Kind+".stdout"))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	cmd := Command(context.WithoutCancel(ctx), r.NetNS, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("lab: starting %s: %w", r.Kind, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	l.onDown(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// Ready when its control socket answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := r.Show(ctx, r.readyCommand())
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("lab: %s exited at start: %s", r.Kind, out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s did not answer on its control socket: %w", r.Kind, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *Router) socket() string { return filepath.Join(r.dir, "bird.ctl") }

func (r *Router) readyCommand() string {
	if r.Kind == "bird" {
		return "show status"
	}
	return "show bgp summary"
}

// Show runs a show command on the router's control socket: `birdc show route all` for BIRD
// (pass "show route all"), `vtysh -c` for FRR (pass "show bgp ipv4 unicast json").
func (r *Router) Show(ctx context.Context, cmd string) (string, error) {
	var argv []string
	if r.Kind == "bird" {
		argv = append([]string{"birdc", "-s", r.socket()}, strings.Fields(cmd)...)
	} else {
		argv = []string{"vtysh", "--vty_socket", r.dir, "-c", cmd}
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
