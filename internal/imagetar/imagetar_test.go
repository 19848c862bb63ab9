package imagetar

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func sampleImage() Image {
	return Image{
		Tags:         []string{"example.test/sample:1"},
		Architecture: "amd64",
		Config: Config{
			User:         "65532:65532",
			Env:          []string{"PATH=/usr/bin"},
			Entrypoint:   []string{"/usr/local/bin/app"},
			ExposedPorts: map[string]struct{}{"7472/tcp": {}},
		},
		Layers: [][]Entry{
			{
				File("/usr/local/bin/app", 0o755, []byte("#!binary")),
				Symlink("/lib", "usr/lib"),
				File("/usr/lib/libx.so.1.2", 0o644, []byte("lib")),
				Symlink("/usr/lib/libx.so.1", "libx.so.1.2"),
				Dir("/tmp", 0o777|fs.ModeSticky),
				{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
				File("/etc/empty", 0o644, nil),
			},
			{File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\n"))},
		},
	}
}

// TestRoundTrip writes an image and reads it back: the tags, the config and every entry come
// back as given (plus the parent directories), the blobs are named by their digests and the
// diff_ids are the digests of the layer bytes.
func TestRoundTrip(t *testing.T) {
	img := sampleImage()
	var buf bytes.Buffer
	id, err := Write(&buf, img)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != id {
		t.Errorf("read ID %s; Write returned %s", a.ID, id)
	}
	if diff := cmp.Diff(img.Tags, a.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(img.Config, a.Config.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if a.Config.Architecture != "amd64" || a.Config.OS != "linux" {
		t.Errorf("platform %s/%s; want linux/amd64", a.Config.OS, a.Config.Architecture)
	}
	wantFirst := append([]Entry{
		Dir("/etc", 0o755), Dir("/home", 0o755), Dir("/usr", 0o755), Dir("/usr/lib", 0o755),
		Dir("/usr/local", 0o755), Dir("/usr/local/bin", 0o755),
	}, img.Layers[0]...)
	for i, want := range [][]Entry{wantFirst, append([]Entry{Dir("/etc", 0o755)}, img.Layers[1]...)} {
		if diff := cmp.Diff(want, a.Layers[i], cmpopts.EquateEmpty(),
			cmpopts.SortSlices(func(a, b Entry) bool { return a.Path < b.Path })); diff != "" {
			t.Errorf("layer %d entries (-want +got):\n%s", i, diff)
		}
		for j := 1; j < len(a.Layers[i]); j++ {
			if a.Layers[i][j-1].Path >= a.Layers[i][j].Path {
				t.Errorf("layer %d: %s before %s; want entries sorted", i, a.Layers[i][j-1].Path, a.Layers[i][j].Path)
			}
		}
	}

	// The raw archive, as containerd reads it: manifest.json names the config and layers by
	// path, and each blob's name is the digest of its bytes.
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Uname != "" {
			t.Errorf("%s: mtime %v, uid %d, uname %q; want the epoch, 0, none", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Uname)
		}
		data, _ := io.ReadAll(tr)
		files[hdr.Name] = data
	}
	var manifest []struct{ Config string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	var cfg ConfigFile
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]string{id}, cfg.RootFS.DiffIDs...) {
		data, ok := files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
		if !ok || Digest(data) != d {
			t.Errorf("blob %s missing or with other bytes", d)
		}
	}
}

// TestDeterministic: the same image gives the same bytes, whatever the order of its entries;
// one changed byte changes the ID.
func TestDeterministic(t *testing.T) {
	write := func(img Image) ([]byte, string) {
		var buf bytes.Buffer
		id, err := Write(&buf, img)
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), id
	}
	a, idA := write(sampleImage())
	shuffled := sampleImage()
	l := shuffled.Layers[0]
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	b, idB := write(shuffled)
	if !bytes.Equal(a, b) || idA != idB {
		t.Errorf("reordered entries: archives differ (IDs %s, %s)", idA, idB)
	}
	changed := sampleImage()
	changed.Layers[0][0].Data = []byte("#!binarY")
	if _, idC := write(changed); idC == idA {
		t.Error("a changed file kept the image ID")
	}
}

func TestReadRejectsTampering(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Write(&buf, sampleImage()); err != nil {
		t.Fatal(err)
	}
	// Flip one byte of the binary inside the first layer.
	raw := bytes.Replace(buf.Bytes(), []byte("#!binary"), []byte("#!binarY"), 1)
	if _, err := Read(bytes.NewReader(raw)); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("tampered layer: err %v; want a digest mismatch", err)
	}
}

func TestLayerRejectsBadEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"relative path", []Entry{File("etc/x", 0o644, nil)}, `"etc/x"`},
		{"unclean path", []Entry{File("/etc/../x", 0o644, nil)}, `"/etc/../x"`},
		{"duplicate", []Entry{File("/x", 0o644, nil), File("/x", 0o644, nil)}, "twice"},
		{"file as parent", []Entry{File("/x", 0o644, nil), File("/x/y", 0o644, nil)}, "not a directory"},
		{"symlink without target", []Entry{Symlink("/x", "")}, "no target"},
		{"device", []Entry{{Path: "/dev/null", Mode: fs.ModeDevice}}, "unsupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Layer(tc.entries); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v; want one mentioning %s", err, tc.want)
			}
		})
	}
}
