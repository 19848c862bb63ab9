package imagetar

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Archive is a docker-archive read back: one image.
type Archive struct {
	Tags []string
	// ID is the digest of the configuration.
	ID     string
	Config ConfigFile
	// Layers hold the entries of each layer in archive order; paths are absolute.
	Layers [][]Entry
}

// Read reads a docker-archive holding one image and checks it: every blob is named by the
// digest of its bytes and the configuration's diff_ids are the layers' digests, in order.
func Read(r io.Reader) (*Archive, error) {
	blobs := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", hdr.Name, err)
		}
		blobs[hdr.Name] = data
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(blobs["manifest.json"], &manifest); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(manifest) != 1 {
		return nil, fmt.Errorf("manifest.json lists %d images; want 1", len(manifest))
	}
	m := manifest[0]
	cfgJSON, err := blob(blobs, m.Config)
	if err != nil {
		return nil, err
	}
	a := &Archive{Tags: m.RepoTags, ID: Digest(cfgJSON)}
	if err := json.Unmarshal(cfgJSON, &a.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config, err)
	}
	if len(a.Config.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config lists %d diff_ids for %d layers", len(a.Config.RootFS.DiffIDs), len(m.Layers))
	}
	for i, name := range m.Layers {
		data, err := blob(blobs, name)
		if err != nil {
			return nil, err
		}
		if got, want := Digest(data), a.Config.RootFS.DiffIDs[i]; got != want {
			return nil, fmt.Errorf("layer %d (%s) has digest %s; the config's diff_id is %s", i, name, got, want)
		}
		entries, err := ReadLayer(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		a.Layers = append(a.Layers, entries)
	}
	return a, nil
}

// blob returns the archive file name, checking that a name blobs/sha256/<hex> matches its bytes.
func blob(blobs map[string][]byte, name string) ([]byte, error) {
	data, ok := blobs[name]
	if !ok {
		return nil, fmt.Errorf("manifest.json names %s, which the archive lacks", name)
	}
	if hex, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && Digest(data) != "sha256:"+hex {
		return nil, fmt.Errorf("%s holds bytes of digest %s", name, Digest(data))
	}
	return data, nil
}

// ReadLayer returns the entries of an uncompressed layer tarball, paths made absolute.
func ReadLayer(r io.Reader) ([]Entry, error) {
	var out []Entry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the layer: %w", err)
		}
		e := Entry{Path: "/" + strings.TrimSuffix(hdr.Name, "/"), UID: hdr.Uid, GID: hdr.Gid, Mode: hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.Mode |= fs.ModeDir
		case tar.TypeSymlink:
			e.Mode |= fs.ModeSymlink
			e.Link = hdr.Linkname
		case tar.TypeReg:
			if e.Data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("reading %s: %w", hdr.Name, err)
			}
		default:
			return nil, fmt.Errorf("%s: unsupported entry type %q", hdr.Name, hdr.Typeflag)
		}
		out = append(out, e)
	}
}
