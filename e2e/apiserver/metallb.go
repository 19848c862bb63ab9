package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"k8s.io/client-go/rest"
)

// MetalLB's published release, for the migration tests: its CRDs and its sample configuration,
// fetched as a Go module (the source archive the Go module proxy serves for the tag), so a test
// needs nothing but the proxy that builds ironlb. hack/install-deps.sh downloads it ahead.
const (
	MetalLBModule  = "go.universe.tf/metallb"
	MetalLBVersion = "v0.15.2"
)

// MetalLBRelease returns the directory of MetalLB's source at MetalLBVersion in the Go module
// cache, downloading it through the Go module proxy if it is not there.
func MetalLBRelease(ctx context.Context) (string, error) {
	tmp, err := os.MkdirTemp("", "metallb-mod-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module fetch\n"), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", MetalLBModule+"@"+MetalLBVersion)
	cmd.Dir = tmp
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || info.Error != "" || info.Dir == "" || runErr != nil {
		return "", fmt.Errorf("apiserver: downloading %s@%s: %v %s %s", MetalLBModule, MetalLBVersion, runErr, info.Error, errOut.String())
	}
	return info.Dir, nil
}

// ApplyMetalLBCRDs installs MetalLB's CRDs from a release directory: config/crd/bases, the
// kustomize bases its manifests are built from, with two changes, both reported in
// docs/migrate-from-metallb.md:
//
//   - Conversion: the bases carry no conversion section (strategy None); the Helm chart's copy
//     of the BGPPeer CRD sets strategy Webhook, pointing at MetalLB's webhook Service, which does
//     not run here. With None the API server serves BGPPeer v1beta1 and v1beta2 by rewriting
//     apiVersion only, which is all the tests need (the samples are v1beta2, the storage
//     version).
//   - ASNs: v0.15.2 declares BGPPeer's myASN and peerASN (both versions) as "format: int32"
//     with "maximum: 4294967295". Kubernetes v1.37 accepts the CRD but refuses every BGPPeer
//     under it ("Maximum boundary value must be of type integer with format int32"), so the
//     format is dropped where the maximum does not fit it. The function fails if the number
//     of such fields is not the 4 known ones, so a release that fixes or spreads it is noticed.
func ApplyMetalLBCRDs(ctx context.Context, cfg *rest.Config, release string) error {
	files, err := filepath.Glob(filepath.Join(release, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("apiserver: no MetalLB CRDs in %s (err %v)", release, err)
	}
	dir, err := os.MkdirTemp("", "metallb-crds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	patched := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		text := int32Beyond.ReplaceAllStringFunc(string(raw), func(m string) string {
			patched++
			return int32Beyond.ReplaceAllString(m, "$2")
		})
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(text), 0o644); err != nil {
			return err
		}
	}
	if patched != 4 {
		return fmt.Errorf("apiserver: MetalLB %s has %d int32 fields with a maximum beyond int32, want the 4 known (BGPPeer myASN, peerASN x 2 versions)", MetalLBVersion, patched)
	}
	return ApplyCRDs(ctx, cfg, dir)
}

// int32Beyond matches a "format: int32" line followed by a maximum that int32 cannot hold.
var int32Beyond = regexp.MustCompile(`(?m)^(\s*)format: int32\n(\s*maximum: 4294967295)$`)

// MetalLBSampleAddresses rewrites the addresses of MetalLB's samples into the documentation
// ranges the tests may use (DESIGN.md): the L2 pool's into the lab's LAN, 198.51.100.0/24 and
// 2001:db8:100::/64, the rest into 203.0.113.0/24 and 192.0.2.0/24. The order matters: longer
// strings first.
var MetalLBSampleAddresses = []string{
	"192.168.10.0/24", "198.51.100.240/28",
	"192.168.9.1-192.168.9.5", "198.51.100.235-198.51.100.239",
	"192.168.20.0/24", "203.0.113.128/26",
	"fc00:f853:0ccd:e799::/124", "2001:db8:100::2f0/124",
	"fc00:f853:ccd:e793::5", "2001:db8:100::5",
	"172.30.0.3", "192.0.2.3",
}

// MetalLBSamples returns MetalLB's sample configurations (configsamples/*.yaml) by file name,
// with the addresses rewritten (MetalLBSampleAddresses). Every address left is checked to be
// gone: a new sample address fails here rather than leak out of the ranges.
func MetalLBSamples(release string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(release, "configsamples", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("apiserver: no samples in %s (err %v)", release, err)
	}
	sort.Strings(files)
	r := strings.NewReplacer(MetalLBSampleAddresses...)
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		text := r.Replace(string(raw))
		for _, left := range []string{"192.168.", "172.30.", "fc00:"} {
			if strings.Contains(text, left) {
				return nil, fmt.Errorf("apiserver: sample %s has an address %s... that MetalLBSampleAddresses does not rewrite", filepath.Base(f), left)
			}
		}
		out[filepath.Base(f)] = text
	}
	return out, nil
}
