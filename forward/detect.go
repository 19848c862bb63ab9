package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// Detection says whether kube-proxy's rules are on this node, for --forwarding=auto: where
// kube-proxy forwards Services, ironlb must not (both would DNAT the same packets).
type Detection struct {
	// KubeProxy is true when any of kube-proxy's tables or chains is present.
	KubeProxy bool
	// Found lists what was found, e.g. "nftables table ip kube-proxy" or
	// "iptables-nft chain KUBE-SERVICES in table ip nat", for the log line that says why
	// forwarding stays off.
	Found []string
}

// String returns a one-line summary.
func (d Detection) String() string {
	if !d.KubeProxy {
		return "kube-proxy rules absent"
	}
	return "kube-proxy rules present: " + strings.Join(d.Found, ", ")
}

// kubeProxyChain is the chain kube-proxy's iptables mode creates in the nat and filter tables.
const kubeProxyChain = "KUBE-SERVICES"

// Detect looks for kube-proxy's rules with the nft binary: its nftables-mode tables (ip and ip6
// "kube-proxy") and its iptables-mode chain KUBE-SERVICES in the iptables-nft tables (ip and
// ip6 "nat" and "filter"). iptables-legacy rules are invisible to nft and not detected. It
// runs "nft -j list tables" and "nft -j list chains"; the error is only for nft failing.
func Detect(ctx context.Context) (Detection, error) {
	tables, err := nftJSON(ctx, "tables")
	if err != nil {
		return Detection{}, err
	}
	chains, err := nftJSON(ctx, "chains")
	if err != nil {
		return Detection{}, err
	}
	return detectIn(tables, chains)
}

func nftJSON(ctx context.Context, what string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nft", "-j", "list", what)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing nftables %s: %w: %s", what, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// nftObject is the part of an entry of `nft -j list tables|chains` that detection reads.
type nftObject struct {
	Family string `json:"family"`
	Table  string `json:"table"` // chains only
	Name   string `json:"name"`
}

// detectIn decides from the JSON listings of tables and chains.
func detectIn(tablesJSON, chainsJSON []byte) (Detection, error) {
	tables, err := parseNFTList(tablesJSON, "table")
	if err != nil {
		return Detection{}, fmt.Errorf("parsing nft table list: %w", err)
	}
	chains, err := parseNFTList(chainsJSON, "chain")
	if err != nil {
		return Detection{}, fmt.Errorf("parsing nft chain list: %w", err)
	}
	var d Detection
	for _, t := range tables {
		if t.Name == "kube-proxy" && (t.Family == "ip" || t.Family == "ip6") {
			d.Found = append(d.Found, "nftables table "+t.Family+" kube-proxy")
		}
	}
	for _, c := range chains {
		if c.Name == kubeProxyChain && (c.Family == "ip" || c.Family == "ip6") && (c.Table == "nat" || c.Table == "filter") {
			d.Found = append(d.Found, fmt.Sprintf("iptables-nft chain %s in table %s %s", kubeProxyChain, c.Family, c.Table))
		}
	}
	slices.Sort(d.Found)
	d.KubeProxy = len(d.Found) > 0
	return d, nil
}

// parseNFTList returns the objects of one kind from nft's JSON output
// ({"nftables": [{"metainfo": ...}, {"table": {...}}, ...]}).
func parseNFTList(data []byte, kind string) ([]nftObject, error) {
	var doc struct {
		NFTables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.NFTables == nil {
		return nil, errors.New(`no "nftables" array`)
	}
	var out []nftObject
	for _, entry := range doc.NFTables {
		raw, ok := entry[kind]
		if !ok {
			continue
		}
		var o nftObject
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, fmt.Errorf("%s entry: %w", kind, err)
		}
		out = append(out, o)
	}
	return out, nil
}
