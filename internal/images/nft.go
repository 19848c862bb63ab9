package images

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"github.com/ironlb/ironlb/internal/imagetar"
)

// NFTBinary is where Debian's nftables package installs nft, in the speaker image as on the host.
const NFTBinary = "/usr/sbin/nft"

// multiarch is Debian's library directory name per GOARCH.
var multiarch = map[string]string{
	"amd64":   "x86_64-linux-gnu",
	"arm64":   "aarch64-linux-gnu",
	"arm":     "arm-linux-gnueabihf",
	"ppc64le": "powerpc64le-linux-gnu",
	"s390x":   "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
}

// NFTFiles returns the entries that make the host's nft run in an otherwise empty image: the
// binary, its ELF interpreter and every shared library it needs (DT_NEEDED, transitively),
// each found where the loader looks on Debian, with the symbolic links on the way (merged /usr:
// /lib -> usr/lib, sonames -> versioned files). Reading the ELF files instead of running ldd
// gives the same list without executing anything. nft needs nothing else to list and load
// rulesets; libraries it would only dlopen (xtables match plugins, to print iptables-nft
// rules in full) are left out.
func NFTFiles(goarch string) ([]imagetar.Entry, error) {
	triplet, ok := multiarch[goarch]
	if !ok {
		return nil, fmt.Errorf("no Debian multiarch directory known for GOARCH %s", goarch)
	}
	dirs := []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib", "/usr/lib"}
	files, err := elfClosure(NFTBinary, dirs)
	if err != nil {
		return nil, fmt.Errorf("collecting nft (install Debian's nftables package): %w", err)
	}
	c := collector{seen: map[string]bool{}}
	for _, f := range files {
		if err := c.add(f); err != nil {
			return nil, err
		}
	}
	return c.entries, nil
}

// elfClosure returns bin, its interpreter and the libraries it needs, transitively, as paths
// on the host (possibly through symbolic links), in a stable order.
func elfClosure(bin string, dirs []string) ([]string, error) {
	out := []string{bin}
	seen := map[string]bool{}
	queue := []string{bin}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		needed, err := f.ImportedLibraries()
		var interp string
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, rerr := prog.ReadAt(b, 0); rerr != nil {
					err = errors.Join(err, rerr)
				}
				interp = string(b[:max(0, len(b)-1)]) // NUL-terminated
			}
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the dynamic section of %s: %w", p, err)
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			out = append(out, interp)
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, d := range dirs {
				if _, err := os.Stat(path.Join(d, lib)); err == nil {
					found = path.Join(d, lib)
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, found in none of %v", p, lib, dirs)
			}
			out = append(out, found)
			queue = append(queue, found)
		}
	}
	return out, nil
}

// collector turns host paths into image entries, keeping the symbolic links met on the way.
type collector struct {
	entries []imagetar.Entry
	seen    map[string]bool
}

// add adds host path p: each symbolic link along it (as a link, then its target) and the file
// it ends at, with its permission bits, owned by root.
func (c *collector) add(p string) error {
	for range 40 { // symlink hops, as the kernel's limit
		link, rest, err := firstSymlink(p)
		if err != nil {
			return err
		}
		if link == "" {
			break
		}
		target, err := os.Readlink(link)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", link, err)
		}
		if !c.seen[link] {
			c.seen[link] = true
			c.entries = append(c.entries, imagetar.Symlink(link, target))
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(link), target)
		}
		p = path.Join(target, rest)
	}
	if c.seen[p] {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	c.seen[p] = true
	c.entries = append(c.entries, imagetar.File(p, st.Mode().Perm(), data))
	return nil
}

// firstSymlink returns the first component of clean absolute path p that is a symbolic link
// (as a path) and the rest of p after it; "" when there is none.
func firstSymlink(p string) (link, rest string, err error) {
	parts := splitPath(p)
	for i := range parts {
		prefix := "/" + path.Join(parts[:i+1]...)
		st, err := os.Lstat(prefix)
		if err != nil {
			return "", "", fmt.Errorf("reading %s: %w", prefix, err)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return prefix, path.Join(parts[i+1:]...), nil
		}
	}
	return "", "", nil
}

func splitPath(p string) []string {
	var parts []string
	for p = path.Clean(p); p != "/"; p = path.Dir(p) {
		parts = append(parts, path.Base(p))
	}
	slices.Reverse(parts)
	return parts
}
