package lab

import (
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// cgroupRoot is where the host mounts its cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// containerID is the name runc gives a container's cgroup under containerd's k8s.io namespace.
var containerID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// removeDeadCgroups removes the cgroups of containers that are gone: the empty
// <hierarchy>/k8s.io/<container id> directories that runc leaves when a container is killed
// with its containerd (every lab's end). The kubelets' cAdvisor tracks every cgroup of the
// host: after a day of lab runs, thousands of them made each kubelet take a minute to start and
// a quarter of a core to idle. A cgroup with a process or a child cannot be removed (EBUSY), so
// live containers of any containerd are safe; one created in the last minute is left alone in
// case its process is not in it yet.
func removeDeadCgroups() int {
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "k8s.io"))
	if fi, err := os.Stat(filepath.Join(cgroupRoot, "k8s.io")); err == nil && fi.IsDir() {
		hierarchies = append(hierarchies, filepath.Join(cgroupRoot, "k8s.io")) // cgroup v2
	}
	removed := 0
	cutoff := time.Now().Add(-time.Minute)
	for _, dir := range hierarchies {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !containerID.MatchString(e.Name()) {
				continue
			}
			if info, err := e.Info(); err != nil || info.ModTime().After(cutoff) {
				continue
			}
			if syscall.Rmdir(filepath.Join(dir, e.Name())) == nil {
				removed++
			}
		}
	}
	return removed
}
