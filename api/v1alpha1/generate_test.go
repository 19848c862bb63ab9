package v1alpha1_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// controllerGenVersion is the version hack/install-deps.sh installs; another version writes
// different files, so the check insists on this one.
const controllerGenVersion = "v0.23.0"

// crdDir is where hack/generate.sh writes the CRDs, relative to this package.
const crdDir = "../../charts/ironlb/crds"

// TestGeneratedFilesAreCurrent runs controller-gen into a temporary directory and compares
// its output with the committed deepcopy functions and CRDs, so a change to the types that
// was not followed by hack/generate.sh fails here.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	bin := controllerGen(t)
	tmp := t.TempDir()
	objDir, crdOut := filepath.Join(tmp, "object"), filepath.Join(tmp, "crd")
	// The same generators and options as hack/generate.sh, with the output redirected.
	cmd := exec.Command(bin, "object", "paths=.", "output:object:dir="+objDir,
		"crd:crdVersions=v1", "output:crd:dir="+crdOut)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen failed: %v\n%s", err, out)
	}

	const deepcopy = "zz_generated.deepcopy.go"
	compareFile(t, filepath.Join(objDir, deepcopy), deepcopy)

	generated := yamlFiles(t, crdOut)
	committed := yamlFiles(t, crdDir)
	if !slices.Equal(generated, committed) {
		t.Errorf("CRD files differ: controller-gen writes %v, %s has %v; run make generate (hack/generate.sh)",
			generated, crdDir, committed)
	}
	for _, name := range generated {
		if slices.Contains(committed, name) {
			compareFile(t, filepath.Join(crdOut, name), filepath.Join(crdDir, name))
		}
	}
}

// controllerGen finds controller-gen on PATH or in $(go env GOPATH)/bin and checks its
// version. A missing or different controller-gen fails the test: skipping would let stale
// files through.
func controllerGen(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("controller-gen")
	if err != nil {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			t.Fatalf("go env GOPATH: %v", err)
		}
		// GOPATH may list several directories; go install uses the first.
		gopath := strings.Split(strings.TrimSpace(string(out)), string(os.PathListSeparator))[0]
		bin = filepath.Join(gopath, "bin", "controller-gen")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("controller-gen is not on PATH or in %s: run hack/install-deps.sh", filepath.Dir(bin))
		}
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "Version: "+controllerGenVersion {
		t.Fatalf("%s reports %q, want %s: run hack/install-deps.sh", bin, got, controllerGenVersion)
	}
	return bin
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	slices.Sort(names)
	return names
}

// compareFile fails when committed differs from generated, naming the first differing line.
func compareFile(t *testing.T, generated, committed string) {
	t.Helper()
	want, err := os.ReadFile(generated)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Errorf("%s: %v; run make generate (hack/generate.sh)", committed, err)
		return
	}
	if bytes.Equal(got, want) {
		return
	}
	t.Errorf("%s is stale: run make generate (hack/generate.sh)\n%s", committed, firstDifference(want, got))
}

func firstDifference(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("first difference at line %d:\n  generated: %q\n  committed: %q", i+1, wl, gl)
		}
	}
	return "the files differ"
}
