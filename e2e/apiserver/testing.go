package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Shared is one API server for the tests of a package: it starts with the first test that asks
// for it, so the tests that need none run without it, and stops when the tests end.
//
//	var server = apiserver.Shared{Options: apiserver.Options{CRDDir: "../charts/ironlb/crds"}}
//
//	func TestMain(m *testing.M) { os.Exit(server.Run(m)) }
type Shared struct {
	// Options start the server. An empty Dir is a temporary directory, removed by Run.
	Options Options

	once sync.Once
	dir  string
	srv  *Server
	err  error
}

// Server returns the shared server, starting it on the first call. A server that cannot start
// fails the test with the reason (e.g. "run hack/install-deps.sh"); it is never skipped.
func (s *Shared) Server(t testing.TB) *Server {
	t.Helper()
	s.once.Do(s.start)
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.srv
}

func (s *Shared) start() {
	o := s.Options
	if o.Dir == "" {
		if s.dir, s.err = os.MkdirTemp("", "ironlb-apiserver-"); s.err != nil {
			return
		}
		o.Dir = s.dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.srv, s.err = Start(ctx, o); s.err != nil {
		s.err = fmt.Errorf("starting kube-apiserver (CRDs from %q): %w", o.CRDDir, s.err)
	}
}

// Run runs the tests (m is TestMain's), then stops the server if it started and removes its
// temporary directory. It returns the tests' exit code.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.srv != nil {
		s.srv.Stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	return code
}

// DecodeObjects splits a YAML or JSON stream (several documents, as kubectl and helm write
// them) into objects, skipping empty documents. A stream that does not parse fails the test.
func DecodeObjects(t testing.TB, text string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decoding document %d: %v\n%s", doc, err, text)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}
