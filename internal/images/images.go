// Package images builds ironlb's container images without Docker (`make images`): static
// binaries (go install, CGO_ENABLED=0, -trimpath) put into docker-archive tarballs by
// internal/imagetar, which `ctr -n k8s.io images import` reads. The speaker image also carries
// the build machine's `nft` with the shared libraries it loads and the loader, copied from the
// Debian packages installed here (see nft.go). build/*.Dockerfile make the same images with
// Docker; dockerfile_test.go checks they agree.
//
// Outputs, in Options.Dir (default ${IRONLB_CACHE:-$HOME/.cache/ironlb}/images):
//
//	ironlb-controller.tar  ghcr.io/ironlb/ironlb-controller:<chart appVersion>
//	ironlb-speaker.tar     ghcr.io/ironlb/ironlb-speaker:<chart appVersion>
//	demo.tar               ironlb.local/demo:dev   (cmd/ironlb-demo)
//	pause.tar              ironlb.local/pause:dev  (cmd/ironlb-pause, containerd's sandbox_image)
//
// A tarball is rewritten only when its inputs (files, configuration, tags) changed; go install
// itself relinks a binary only when its sources changed.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/ironlb/ironlb/internal/imagetar"
	"sigs.k8s.io/yaml"
)

// Spec describes one image.
type Spec struct {
	// Name is the tarball's name without ".tar".
	Name string
	// Ref is the image's tag, "registry/repository:tag".
	Ref string
	// Package is the Go main package of its binary, relative to the repository root.
	Package string
	// Binary is where the binary lives in the image.
	Binary string
	// NFT adds nft, its libraries and the loader.
	NFT    bool
	Config imagetar.Config
	// Files are added as they are (e.g. /etc/passwd).
	Files []imagetar.Entry
	// Dockerfile, relative to the repository root, makes the same image with Docker ("" if none).
	Dockerfile string
}

// envPath is every image's PATH, that of the Debian and distroless base images.
const envPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Nonroot is the user the controller and the demo run as (distroless' "nonroot").
const Nonroot = "65532:65532"

// Specs returns the images for the chart's appVersion.
func Specs(appVersion string) []Spec {
	passwd := []imagetar.Entry{
		imagetar.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")),
		imagetar.File("/etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")),
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
		imagetar.Dir("/tmp", fs.ModeSticky|0o777),
	}
	return []Spec{
		{
			Name:    "ironlb-controller",
			Ref:     "ghcr.io/ironlb/ironlb-controller:" + appVersion,
			Package: "./cmd/ironlb-controller",
			Binary:  "/usr/local/bin/ironlb-controller",
			Config: imagetar.Config{
				User:         Nonroot,
				Env:          []string{envPath},
				Entrypoint:   []string{"/usr/local/bin/ironlb-controller"},
				ExposedPorts: map[string]struct{}{"7472/tcp": {}},
			},
			Files:      passwd,
			Dockerfile: "build/controller.Dockerfile",
		},
		{
			Name:    "ironlb-speaker",
			Ref:     "ghcr.io/ironlb/ironlb-speaker:" + appVersion,
			Package: "./cmd/ironlb-speaker",
			Binary:  "/usr/local/bin/ironlb-speaker",
			NFT:     true,
			Config: imagetar.Config{
				Env:          []string{envPath},
				Entrypoint:   []string{"/usr/local/bin/ironlb-speaker"},
				ExposedPorts: map[string]struct{}{"7473/tcp": {}, "7946/tcp": {}, "7946/udp": {}},
			},
			Files:      []imagetar.Entry{imagetar.Dir("/tmp", fs.ModeSticky|0o777)},
			Dockerfile: "build/speaker.Dockerfile",
		},
		{
			Name:    "demo",
			Ref:     "ironlb.local/demo:dev",
			Package: "./cmd/ironlb-demo",
			Binary:  "/usr/local/bin/ironlb-demo",
			Config: imagetar.Config{
				User:         Nonroot,
				Env:          []string{envPath},
				Entrypoint:   []string{"/usr/local/bin/ironlb-demo"},
				ExposedPorts: map[string]struct{}{"8080/tcp": {}, "8081/tcp": {}},
			},
			Files: passwd,
		},
		{
			Name:    "pause",
			Ref:     "ironlb.local/pause:dev",
			Package: "./cmd/ironlb-pause",
			Binary:  "/pause",
			Config: imagetar.Config{
				User:       "65535:65535", // as registry.k8s.io/pause
				Entrypoint: []string{"/pause"},
			},
		},
	}
}

// Options of Build.
type Options struct {
	// Root is the repository root (default: the module root of the working directory).
	Root string
	// Dir receives the tarballs (default DefaultDir()).
	Dir string
	Log *slog.Logger
}

// Built is one image Build made or found up to date.
type Built struct {
	Spec
	// Path of the tarball.
	Path string
	// ID is the image's config digest ("sha256:...").
	ID string
	// Size of the tarball in bytes.
	Size int64
	// Written is false when the tarball was already up to date.
	Written bool
}

// DefaultDir is ${IRONLB_CACHE:-$HOME/.cache/ironlb}/images.
func DefaultDir() (string, error) {
	root := os.Getenv("IRONLB_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory: %w", err)
		}
		root = filepath.Join(home, ".cache", "ironlb")
	}
	return filepath.Join(root, "images"), nil
}

// Build builds every image of Specs for the chart's appVersion. Concurrent builds into the
// same directory take turns.
func Build(ctx context.Context, opts Options) ([]Built, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var err error
	if opts.Root == "" {
		if opts.Root, err = moduleRoot(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Dir == "" {
		if opts.Dir, err = DefaultDir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Dir, err)
	}
	unlock, err := lock(filepath.Join(opts.Dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	version, err := AppVersion(opts.Root)
	if err != nil {
		return nil, err
	}
	specs := Specs(version)
	bin := filepath.Join(opts.Dir, "bin")
	if err := goInstall(ctx, opts.Root, bin, specs); err != nil {
		return nil, err
	}
	var nft []imagetar.Entry // read once, for the images that need it
	var out []Built
	for _, s := range specs {
		data, err := os.ReadFile(filepath.Join(bin, filepath.Base(s.Package)))
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Name, err)
		}
		layer := append([]imagetar.Entry{imagetar.File(s.Binary, 0o755, data)}, s.Files...)
		if s.NFT {
			if nft == nil {
				if nft, err = NFTFiles(runtime.GOARCH); err != nil {
					return nil, fmt.Errorf("image %s: %w", s.Name, err)
				}
			}
			layer = append(layer, nft...)
		}
		img := imagetar.Image{Tags: []string{s.Ref}, Architecture: runtime.GOARCH, Config: s.Config, Layers: [][]imagetar.Entry{layer}}
		b, err := write(filepath.Join(opts.Dir, s.Name+".tar"), img)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Name, err)
		}
		b.Spec = s
		opts.Log.Info("image", "ref", s.Ref, "path", b.Path, "id", b.ID, "bytes", b.Size, "written", b.Written)
		out = append(out, b)
	}
	return out, nil
}

// AppVersion reads the chart's appVersion, the tag of the controller and speaker images.
func AppVersion(root string) (string, error) {
	p := filepath.Join(root, "charts", "ironlb", "Chart.yaml")
	raw, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading the chart's appVersion: %w", err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if chart.AppVersion == "" {
		return "", fmt.Errorf("%s has no appVersion", p)
	}
	return chart.AppVersion, nil
}

// GoBuildFlags are the flags of every image binary (and of the Dockerfiles' go build):
// static, without file system paths or VCS stamps, stripped, so the same source gives the same
// bytes wherever it is checked out.
var GoBuildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// goInstall builds the binaries into bin; go install relinks only what changed.
func goInstall(ctx context.Context, root, bin string, specs []Spec) error {
	args := append([]string{"install"}, GoBuildFlags...)
	for _, s := range specs {
		args = append(args, s.Package)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOBIN="+bin, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// write writes img to path unless path already holds it: the key file beside it records a
// digest of everything the archive is made from.
func write(path string, img imagetar.Image) (Built, error) {
	key, err := inputKey(img)
	if err != nil {
		return Built{}, err
	}
	keyPath := path + ".key"
	if prev, err := os.ReadFile(keyPath); err == nil {
		if id, ok := strings.CutPrefix(string(prev), key+" "); ok {
			if st, err := os.Stat(path); err == nil {
				return Built{Path: path, ID: strings.TrimSpace(id), Size: st.Size()}, nil
			}
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return Built{}, fmt.Errorf("creating the archive: %w", err)
	}
	defer os.Remove(tmp.Name())
	id, err := imagetar.Write(tmp, img)
	if err != nil {
		tmp.Close()
		return Built{}, err
	}
	st, err := tmp.Stat()
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Built{}, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Built{}, fmt.Errorf("writing the archive: %w", err)
	}
	if err := os.WriteFile(keyPath, []byte(key+" "+id+"\n"), 0o644); err != nil {
		return Built{}, fmt.Errorf("writing the cache key: %w", err)
	}
	return Built{Path: path, ID: id, Size: st.Size(), Written: true}, nil
}

// inputKey digests what an archive is made from: the archive format's version, the tags,
// platform and configuration, and each entry's metadata and content digest.
func inputKey(img imagetar.Image) (string, error) {
	type entry struct {
		Path, Link string
		Mode       fs.FileMode
		UID, GID   int
		Data       [32]byte
	}
	in := struct {
		Format       int
		Tags         []string
		Architecture string
		Config       imagetar.Config
		Layers       [][]entry
	}{Format: 1, Tags: img.Tags, Architecture: img.Architecture, Config: img.Config}
	for _, l := range img.Layers {
		var es []entry
		for _, e := range l {
			es = append(es, entry{Path: e.Path, Link: e.Link, Mode: e.Mode, UID: e.UID, GID: e.GID, Data: sha256.Sum256(e.Data)})
		}
		in.Layers = append(in.Layers, es)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("digesting the image inputs: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the ironlb module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// lock takes an exclusive lock on path, waiting for it, and returns its release.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
