package images

import (
	"bytes"
	"context"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/internal/imagetar"
)

// build runs Build once per test binary, into the default cache directory that `make images`
// and the lab use (so a warm cache serves all three).
var build = sync.OnceValues(func() ([]Built, error) {
	return Build(context.Background(), Options{Root: filepath.Join("..", "..")})
})

func builtImages(t *testing.T) map[string]Built {
	t.Helper()
	built, err := build()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Built{}
	for _, b := range built {
		out[b.Name] = b
	}
	return out
}

func readArchive(t *testing.T, b Built) *imagetar.Archive {
	t.Helper()
	raw, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := imagetar.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", b.Path, err)
	}
	if a.ID != b.ID {
		t.Errorf("%s: ID %s; Build reported %s", b.Path, a.ID, b.ID)
	}
	return a
}

// TestBuild checks each image Build makes: its tag, its configuration as specified, a static
// binary at the specified path; for the speaker, an nft whose every library and loader is in
// the image itself. A second Build finds everything up to date.
func TestBuild(t *testing.T) {
	images := builtImages(t)
	version, err := AppVersion(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ironlb-controller": "ghcr.io/ironlb/ironlb-controller:" + version,
		"ironlb-speaker":    "ghcr.io/ironlb/ironlb-speaker:" + version,
		"demo":              "ironlb.local/demo:dev",
		"pause":             "ironlb.local/pause:dev",
	}
	if len(images) != len(want) {
		t.Errorf("built %d images; want %d", len(images), len(want))
	}
	for name, ref := range want {
		t.Run(name, func(t *testing.T) {
			b, ok := images[name]
			if !ok {
				t.Fatalf("no image %s", name)
			}
			if b.Path != filepath.Join(filepath.Dir(b.Path), name+".tar") {
				t.Errorf("tarball %s; want %s.tar", b.Path, name)
			}
			a := readArchive(t, b)
			if diff := cmp.Diff([]string{ref}, a.Tags); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(b.Config, a.Config.Config); diff != "" {
				t.Errorf("config (-spec +archive):\n%s", diff)
			}
			if a.Config.Architecture != runtime.GOARCH || a.Config.OS != "linux" {
				t.Errorf("platform %s/%s", a.Config.OS, a.Config.Architecture)
			}
			files := entries(a)
			bin, ok := files[b.Binary]
			if !ok || !bin.Mode.IsRegular() || bin.Mode.Perm() != 0o755 {
				t.Fatalf("binary %s: %+v; want an executable file", b.Binary, bin.Mode)
			}
			f, err := elf.NewFile(bytes.NewReader(bin.Data))
			if err != nil {
				t.Fatalf("binary %s: %v", b.Binary, err)
			}
			libs, _ := f.ImportedLibraries()
			if interp := f.Section(".interp"); interp != nil || len(libs) > 0 {
				t.Errorf("binary %s is dynamically linked (libraries %v); want static", b.Binary, libs)
			}
			if got := b.Config.Entrypoint; len(got) == 0 || got[0] != b.Binary {
				t.Errorf("entrypoint %v; want the binary %s", got, b.Binary)
			}
			if _, has := files[NFTBinary]; has != b.NFT {
				t.Errorf("%s in the image: %v; want %v", NFTBinary, has, b.NFT)
			}
			if b.NFT {
				checkSelfContained(t, files, NFTBinary)
			}
		})
	}

	again, err := Build(context.Background(), Options{Root: filepath.Join("..", "..")})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range again {
		if b.Written || b.ID != images[b.Name].ID {
			t.Errorf("second build of %s: written %v, ID %s (first %s); want it up to date", b.Name, b.Written, b.ID, images[b.Name].ID)
		}
	}
}

// entries maps the image's paths to their entries (one layer).
func entries(a *imagetar.Archive) map[string]imagetar.Entry {
	m := map[string]imagetar.Entry{}
	for _, l := range a.Layers {
		for _, e := range l {
			m[e.Path] = e
		}
	}
	return m
}

// checkSelfContained resolves bin's interpreter and its libraries, transitively, inside the
// image (following the image's own symbolic links), as the loader would in a container, and
// compares the libraries with what ldd lists on this machine.
func checkSelfContained(t *testing.T, files map[string]imagetar.Entry, bin string) {
	t.Helper()
	dirs := []string{"/lib/" + multiarch[runtime.GOARCH], "/usr/lib/" + multiarch[runtime.GOARCH]}
	found := map[string]bool{}
	queue := []string{bin}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		e, ok := resolve(files, p)
		if !ok {
			t.Errorf("%s is not in the image", p)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(e.Data))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		libs, _ := f.ImportedLibraries()
		if s := f.Section(".interp"); s != nil {
			data, _ := s.Data()
			libs = append(libs, string(bytes.TrimRight(data, "\x00")))
		}
		for _, lib := range libs {
			if found[path.Base(lib)] {
				continue
			}
			found[path.Base(lib)] = true
			candidates := []string{lib}
			if !path.IsAbs(lib) {
				candidates = nil
				for _, d := range dirs {
					candidates = append(candidates, path.Join(d, lib))
				}
			}
			ok := false
			for _, c := range candidates {
				if _, ok = resolve(files, c); ok {
					queue = append(queue, c)
					break
				}
			}
			if !ok {
				t.Errorf("%s needs %s, which the image lacks (looked in %v)", p, lib, candidates)
			}
		}
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\S+)(?: => (\S+))? \(0x`).FindAllStringSubmatch(string(out), -1) {
		name := path.Base(m[1])
		if name == "linux-vdso.so.1" || name == "linux-gate.so.1" {
			continue
		}
		if !found[name] {
			t.Errorf("ldd lists %s for %s; the image's closure does not have it", m[1], bin)
		}
	}
}

// resolve follows symbolic links inside the image to a regular file.
func resolve(files map[string]imagetar.Entry, p string) (imagetar.Entry, bool) {
	for range 40 {
		// Resolve the first linked component.
		parts := splitPath(p)
		resolved := false
		for i := range parts {
			prefix := "/" + path.Join(parts[:i+1]...)
			e, ok := files[prefix]
			if !ok {
				return imagetar.Entry{}, false
			}
			if e.Mode&fs.ModeSymlink != 0 {
				target := e.Link
				if !path.IsAbs(target) {
					target = path.Join(path.Dir(prefix), target)
				}
				p = path.Join(target, path.Join(parts[i+1:]...))
				resolved = true
				break
			}
		}
		if !resolved {
			e := files[path.Clean(p)]
			return e, e.Mode.IsRegular()
		}
	}
	return imagetar.Entry{}, false
}
