package l2

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Interface is what interface choice needs to know about one of the node's network
// interfaces.
type Interface struct {
	// Name is the interface name, as in `ip link`.
	Name string
	// Prefixes are the interface's addresses with their prefix length (198.51.100.10/24).
	Prefixes []netip.Prefix
	// Virtual is true for interfaces without a device behind them (bridges, veth, VLANs,
	// bonds, tunnels): on Linux, those without /sys/class/net/<name>/device.
	Virtual bool
	// Up is true when the interface is administratively up.
	Up bool
	// Loopback is true for loopback interfaces (lo), which are never chosen.
	Loopback bool
	// Master is the bridge or bond this interface is a port of, or "". Frames for the
	// port's traffic are handled by the master, so the default choice skips ports.
	Master string
	// MAC is the interface's Ethernet address (nil if it has none of 6 bytes).
	MAC net.HardwareAddr
}

// ChooseInterfaces returns the names of the interfaces that ip is announced on, sorted, and
// the patterns that name no interface.
//
// patterns are an L2Advertisement's interface names and globs (path.Match syntax: "eth*",
// "enp[0-9]s0"). When there are patterns, chosen holds every interface (up or not, loopback
// excepted) whose name one of them matches: an interface that is down is still chosen, so
// that the Announcer reports it and answers on it once it comes up. missing holds, in their
// given order, the literal names (no glob characters) that match no interface and the
// malformed globs; a glob that matches nothing is not missing, since globs are written to
// fit many nodes.
//
// With no patterns, chosen holds the up interfaces with a subnet that contains ip; if there
// is none, every up interface that is neither virtual nor loopback. Either way it skips the
// ports of a bridge or bond (their master is the interface to answer on). chosen can be
// empty; the caller reports that.
//
// ChooseInterfaces is pure.
func ChooseInterfaces(ip netip.Addr, patterns []string, ifaces []Interface) (chosen, missing []string) {
	if len(patterns) > 0 {
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil {
				missing = append(missing, p) // malformed: matches nothing
				continue
			}
			found := false
			for _, ifi := range ifaces {
				if ok, _ := path.Match(p, ifi.Name); ok {
					found = true
					if !ifi.Loopback {
						chosen = append(chosen, ifi.Name)
					}
				}
			}
			if !found && !hasGlob(p) {
				missing = append(missing, p)
			}
		}
		return sortedUnique(chosen), missing
	}

	ip = ip.WithZone("")
	for _, ifi := range ifaces {
		if ifi.Up && !ifi.Loopback && ifi.Master == "" && slices.ContainsFunc(ifi.Prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			chosen = append(chosen, ifi.Name)
		}
	}
	if len(chosen) == 0 {
		for _, ifi := range ifaces {
			if ifi.Up && !ifi.Loopback && !ifi.Virtual && ifi.Master == "" {
				chosen = append(chosen, ifi.Name)
			}
		}
	}
	return sortedUnique(chosen), nil
}

// hasGlob reports whether p uses path.Match's special characters.
func hasGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// Interfaces reads the node's network interfaces, in the network namespace of the calling
// thread (the one the speaker runs in), sorted by name. Virtual and Master come from
// /sys/class/net, which shows the network namespace sysfs was mounted in (`ip netns exec`
// mounts the namespace's own).
func Interfaces() ([]Interface, error) {
	return readInterfaces("/sys/class/net")
}

// readInterfaces is Interfaces with the sysfs directory that tells devices from virtual
// interfaces as a parameter. sysfs shows the network namespace that mounted it, so a test in
// another namespace passes a directory it made up.
func readInterfaces(sysClassNet string) ([]Interface, error) {
	list, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	out := make([]Interface, 0, len(list))
	for _, ifi := range list {
		addrs, err := ifi.Addrs()
		if err != nil {
			// The interface went away between the two calls: skip it, as if listed later.
			if _, lerr := net.InterfaceByIndex(ifi.Index); lerr != nil {
				continue
			}
			return nil, fmt.Errorf("listing addresses of %s: %w", ifi.Name, err)
		}
		it := Interface{
			Name:     ifi.Name,
			Up:       ifi.Flags&net.FlagUp != 0,
			Loopback: ifi.Flags&net.FlagLoopback != 0,
		}
		if len(ifi.HardwareAddr) == 6 {
			it.MAC = ifi.HardwareAddr
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			addr, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			it.Prefixes = append(it.Prefixes, netip.PrefixFrom(addr.Unmap(), ones))
		}
		_, err = os.Lstat(filepath.Join(sysClassNet, ifi.Name, "device"))
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			it.Virtual = true
		default:
			return nil, fmt.Errorf("checking whether %s is virtual: %w", ifi.Name, err)
		}
		master, err := os.Readlink(filepath.Join(sysClassNet, ifi.Name, "master"))
		switch {
		case err == nil:
			it.Master = filepath.Base(master)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("reading the master of %s: %w", ifi.Name, err)
		}
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
