// Package imagetar writes container images as docker-archive tarballs, the manifest.json
// format of `docker save`, which `ctr images import` reads, without Docker: a manifest.json naming the image's tags, its config blob and its layer blobs, each blob stored
// under blobs/sha256/<digest of its bytes>.
//
// The output depends only on the input: entries are sorted, every time is the Unix epoch,
// owners are numeric and names empty, so the same files give the same image digest.
package imagetar

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// Entry is one file, directory or symbolic link of a layer.
type Entry struct {
	// Path is absolute inside the image ("/usr/local/bin/x").
	Path string
	// Mode holds the permission bits and the type: 0 for a regular file, fs.ModeDir or
	// fs.ModeSymlink.
	Mode     fs.FileMode
	UID, GID int
	// Data is a regular file's content.
	Data []byte
	// Link is a symbolic link's target.
	Link string
}

// File, Dir and Symlink make entries owned by root.
func File(p string, perm fs.FileMode, data []byte) Entry {
	return Entry{Path: p, Mode: perm, Data: data}
}

// Dir makes a directory entry owned by root.
func Dir(p string, perm fs.FileMode) Entry { return Entry{Path: p, Mode: fs.ModeDir | perm} }

// Symlink makes a symbolic link entry.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Link: target}
}

// Config is the part of the image configuration a container runtime uses.
type Config struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// Image is an image of one or more layers, applied in order.
type Image struct {
	// Tags are full references, "registry/repository:tag".
	Tags []string
	// Architecture is a GOARCH value; OS is always linux.
	Architecture string
	Config       Config
	Layers       [][]Entry
}

// ConfigFile is the image configuration JSON (OCI image-spec config, which Docker reads too).
type ConfigFile struct {
	Created      string    `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       Config    `json:"config"`
	RootFS       RootFS    `json:"rootfs"`
	History      []History `json:"history,omitempty"`
}

// RootFS lists the digests of the uncompressed layers, in order.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// History describes how a layer was made.
type History struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// manifestEntry is one image of manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// epoch is the time of every entry and of the image's creation.
var epoch = time.Unix(0, 0).UTC()

// Write writes img as a docker-archive to w and returns the image ID: the digest of its
// configuration ("sha256:..."), which is what `ctr images ls` and the kubelet show as its
// config digest.
func Write(w io.Writer, img Image) (string, error) {
	if len(img.Tags) == 0 {
		return "", errors.New("image has no tags")
	}
	if img.Architecture == "" {
		return "", errors.New("image has no architecture")
	}
	cfg := ConfigFile{
		Created:      epoch.Format(time.RFC3339),
		Architecture: img.Architecture,
		OS:           "linux",
		Config:       img.Config,
		RootFS:       RootFS{Type: "layers"},
	}
	var layers [][]byte
	for i, entries := range img.Layers {
		data, err := Layer(entries)
		if err != nil {
			return "", fmt.Errorf("layer %d: %w", i, err)
		}
		layers = append(layers, data)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, Digest(data))
		cfg.History = append(cfg.History, History{Created: cfg.Created, CreatedBy: "ironlb imagetar"})
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding the image config: %w", err)
	}
	m := manifestEntry{Config: blobPath(Digest(cfgJSON)), RepoTags: img.Tags}
	for _, id := range cfg.RootFS.DiffIDs {
		m.Layers = append(m.Layers, blobPath(id))
	}
	manifest, err := json.Marshal([]manifestEntry{m})
	if err != nil {
		return "", fmt.Errorf("encoding manifest.json: %w", err)
	}

	type file struct {
		name string
		data []byte
	}
	files := []file{{m.Config, cfgJSON}}
	for i, l := range layers {
		files = append(files, file{m.Layers[i], l})
	}
	files = append(files, file{"manifest.json", manifest})
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
			return "", fmt.Errorf("writing the archive: %w", err)
		}
	}
	for _, f := range files {
		if written[f.name] { // two identical layers are one blob
			continue
		}
		written[f.name] = true
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("writing %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("writing the archive: %w", err)
	}
	return Digest(cfgJSON), nil
}

// Digest returns "sha256:<hex>" of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// Layer returns the uncompressed layer tarball of entries: sorted by path, each missing parent
// directory added (root, 0755), every time the epoch. Paths must be absolute and clean and
// appear once.
func Layer(entries []Entry) ([]byte, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == "/" {
			return nil, fmt.Errorf("entry path %q: want an absolute, clean path below /", e.Path)
		}
		if _, dup := byPath[e.Path]; dup {
			return nil, fmt.Errorf("entry path %q appears twice", e.Path)
		}
		byPath[e.Path] = e
	}
	for _, e := range entries {
		for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
			if prev, ok := byPath[dir]; ok {
				if !prev.Mode.IsDir() {
					return nil, fmt.Errorf("entry %q is below %q, which is not a directory", e.Path, dir)
				}
				continue
			}
			byPath[dir] = Dir(dir, 0o755)
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := byPath[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    tarMode(e.Mode),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: epoch,
		}
		switch {
		case e.Mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case e.Mode&fs.ModeSymlink != 0:
			if e.Link == "" {
				return nil, fmt.Errorf("symlink %q has no target", p)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.Link
		case e.Mode.IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.Data))
		default:
			return nil, fmt.Errorf("entry %q: unsupported mode %v", p, e.Mode)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("writing %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// tarMode is the tar header mode of m: permission bits plus setuid, setgid and sticky.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
