package images

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/internal/imagetar"
)

// baseImages is what the Dockerfiles' final base images bring to the image configuration, as
// their publishers document it (`docker inspect`): the Docker-built image's configuration is
// this plus the Dockerfile's own instructions.
var baseImages = map[string]imagetar.Config{
	"gcr.io/distroless/static-debian12:nonroot": {
		User: "65532",
		Env:  []string{envPath, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	},
	"debian:bookworm-slim": {Env: []string{envPath}},
}

// knownEnvDifferences are variables a Docker-built image has and ours lacks, with the reason.
var knownEnvDifferences = map[string]string{
	"SSL_CERT_FILE": "distroless' CA bundle: the controller trusts only the API server's CA from its ServiceAccount, and our image carries no bundle",
}

// dockerfile is what the parity check reads from a Dockerfile.
type dockerfile struct {
	base     string // the final stage's FROM
	copies   map[string]string
	goBuild  string // the go build command line of the build stage
	installs string // the final stage's apt-get install line, if any
	cfg      imagetar.Config
}

// parseDockerfile reads the instructions the parity check needs (continuation lines joined).
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	d := dockerfile{copies: map[string]string{}}
	final := false
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			fields := strings.Fields(rest)
			final = !slices.Contains(fields, "AS")
			if final {
				d.base = fields[len(fields)-1]
				base, ok := baseImages[d.base]
				if !ok {
					t.Fatalf("%s: base image %s is not in baseImages; add what it brings", path, d.base)
				}
				d.cfg = imagetar.Config{User: base.User, Env: slices.Clone(base.Env)}
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				d.goBuild = rest
			}
			if final && strings.Contains(rest, "apt-get install") {
				d.installs = rest
			}
		case "COPY":
			fields := strings.Fields(rest)
			if final && len(fields) == 3 && fields[0] == "--from=build" {
				d.copies[fields[1]] = fields[2]
			}
		case "ENV":
			name, _, _ := strings.Cut(rest, "=")
			d.cfg.Env = slices.DeleteFunc(d.cfg.Env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
			d.cfg.Env = append(d.cfg.Env, rest)
		case "USER":
			d.cfg.User = rest
		case "EXPOSE":
			d.cfg.ExposedPorts = map[string]struct{}{}
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				d.cfg.ExposedPorts[p] = struct{}{}
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.cfg.Entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s: want the JSON form: %v", path, rest, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &d.cfg.Cmd); err != nil {
				t.Fatalf("%s: CMD %s: want the JSON form: %v", path, rest, err)
			}
		}
	}
	return d
}

// TestDockerfilesMatch checks that build/*.Dockerfile make the images make images makes: the
// binary from the same package, built with the same flags, at the same path; the same user,
// entrypoint, command, environment and ports; nft for the speaker from the same Debian release
// as the build machine's.
func TestDockerfilesMatch(t *testing.T) {
	root := filepath.Join("..", "..")
	version, err := AppVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range Specs(version) {
		if s.Dockerfile == "" {
			continue
		}
		n++
		t.Run(s.Name, func(t *testing.T) {
			d := parseDockerfile(t, filepath.Join(root, s.Dockerfile))
			out := "/out/" + filepath.Base(s.Package)
			if got := d.copies[out]; got != s.Binary {
				t.Errorf("the Dockerfile copies %s to %q; make images puts the binary at %s", out, got, s.Binary)
			}
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-buildvcs=false", `-ldflags="-s -w"`, "-o " + out + " " + s.Package} {
				if !strings.Contains(d.goBuild, want) {
					t.Errorf("the Dockerfile's go build lacks %s (make images builds with CGO_ENABLED=0 %v): %s", want, GoBuildFlags, d.goBuild)
				}
			}
			if got := strings.Contains(d.installs, " nftables"); got != s.NFT {
				t.Errorf("the Dockerfile installs nftables: %v; make images adds nft: %v", got, s.NFT)
			}
			want := d.cfg
			want.Env = slices.DeleteFunc(want.Env, func(e string) bool {
				name, _, _ := strings.Cut(e, "=")
				_, known := knownEnvDifferences[name]
				return known
			})
			if diff := cmp.Diff(want, s.Config); diff != "" {
				t.Errorf("image configuration (-Dockerfile +make images):\n%s", diff)
			}
			if s.NFT {
				codename := osRelease(t)["VERSION_CODENAME"]
				if d.base != "debian:"+codename+"-slim" {
					t.Errorf("the Dockerfile's nft comes from %s, make images' from this machine's Debian %s: make them the same release", d.base, codename)
				}
			}
		})
	}
	if n != 2 {
		t.Errorf("%d images have a Dockerfile; want the controller and the speaker", n)
	}
}

func osRelease(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}
