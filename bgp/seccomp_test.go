package bgp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// refuseTCPMD5 makes this process's setsockopt(IPPROTO_TCP, TCP_MD5SIG) fail with
// ENOPROTOOPT, as on a kernel built without CONFIG_TCP_MD5SIG, with a seccomp filter on
// every thread (present and future). It cannot be undone: call it only in a child process.
func refuseTCPMD5() error {
	arch := map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}[runtime.GOARCH]
	if arch == 0 {
		return fmt.Errorf("no seccomp architecture for %s", runtime.GOARCH)
	}
	// struct seccomp_data: nr at 0, arch at 4, args[i] at 16+8i (low word first).
	const nr, archOff, level, optname = 0, 4, 16 + 8*1, 16 + 8*2
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	prog := []unix.SockFilter{
		ld(archOff), jeq(arch, 7), // 0-1: another architecture: allow (index 9)
		ld(nr), jeq(unix.SYS_SETSOCKOPT, 5), // 2-3
		ld(level), jeq(unix.IPPROTO_TCP, 3), // 4-5
		ld(optname), jeq(unix.TCP_MD5SIG, 1), // 6-7
		ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOPROTOOPT)&unix.SECCOMP_RET_DATA), // 8
		ret(unix.SECCOMP_RET_ALLOW), // 9
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	return nil
}
