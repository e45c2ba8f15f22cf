/*
 * pkube shim: the per-container supervisor, and the container's setup recipe.
 *
 * Usage: shim CONFIG   with fd 3 = notify pipe (write end), fd 4 = go pipe (read end).
 * CONFIG is a file of NUL-terminated key/value pairs written by pkube/runtime/spec.py, or "-"
 * to read them from stdin (the runtime passes them through a pipe).
 *
 * Protocol with the runtime (Python):
 *   1. the shim daemonizes (the process the runtime spawned exits at once);
 *   2. it forks the container child, which joins or creates its namespaces and
 *      then waits on the go pipe; the shim writes "pid SHIM CHILD\n" on notify;
 *   3. the runtime wires CHILD's network and writes one byte on the go pipe (EOF
 *      aborts the start); the child sets up its rootfs and makes sure it is in
 *      its cgroup: on cgroup v2 ("cgroup" key) it was created inside it
 *      (clone3 CLONE_INTO_CGROUP); on v1 ("cgroup_procs" keys) a helper process
 *      writes its pid into each cgroup.procs as soon as it is forked (an RCU grace
 *      period, 10-14 ms, overlapping everything from the fork on) and says "j";
 *   4. the child enters its cgroup namespace, drops privileges and execs; the
 *      shim writes "ok\n" or
 *      "err MESSAGE\n" on notify and closes it;
 *   5. the shim pumps stdout/stderr into LOG (JSON lines like Docker's
 *      json-file driver) and to attach clients on an abstract unix socket,
 *      reaps the child, writes EXITFILE atomically ("CODE FINISHED_AT\n"),
 *      sends an exit frame to clients and exits.
 *
 * Attach clients send one mode byte: 'a' (output + stdin), 'o' (output), 'w'
 * (exit only), or 'r' then rows and cols (2 bytes each, big endian) to resize the
 * pty, after which the shim hangs up. Frames to clients: [stream:1][len:4 big endian][data];
 * stream 1 = stdout, 2 = stderr, 3 = exit (data = 4 byte code).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <net/if.h>

#define MAXV 512
#define MAXCLIENTS 16

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* The kernel's struct clone_args (linux/sched.h, up to the cgroup field: 5.7+). */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
	         set_tid, set_tid_size, cgroup;
};

struct config {
	char *argv[MAXV]; int argc;
	char *env[MAXV]; int envc;
	/* the lists below are sized to the config (alloc_lists): none can drop an entry */
	char **bind_src, **bind_dst; int *bind_ro; int nbinds;
	char **ns_type, **ns_path; int nns;
	char **mask; int nmask;
	char **ro_path; int nro;
	int unshare_flags;
	char *rootfs, *overlay, *hostname, *cwd, *user, *log, *sock, *exitfile, *ptmx, *cgroup;
	char **procs; int nprocs;
	int tty, stdin_open, rows, cols;
	int rootfs_ro;
	int allow_escalation;     /* no no_new_privs: setuid binaries may raise privileges */
	char **seccomp; int nseccomp;   /* system calls refused with EPERM (pkube/runtime/seccomp.py) */
	int seccomp_namespaces;   /* refuse clone with namespace flags; clone3 answers ENOSYS */
	uint64_t caps;
};

static struct config C;
static int err_fd = -1;           /* child: CLOEXEC pipe to report a failure */
static int pty_sock = -1;         /* child: where to send the master of its own pty */
static int joined_fd = -1;        /* child: "j" from the cgroup v1 join helper, or its error */

/* ---------- errors ---------- */

static void die(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int saved = errno, n;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (saved && n < (int)sizeof msg - 2)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(saved));
	if (err_fd >= 0 && write(err_fd, msg, strlen(msg)) < 0) {}
	_exit(127);
}

/* ---------- config ---------- */

static int ns_flag(const char *name)
{
	static const struct { const char *n; int f; } t[] = {
		{"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
		{"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"cgroup", CLONE_NEWCGROUP},
	};
	for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(t[i].n, name)) return t[i].f;
	return 0;
}

static void set_key(char *k, char *v)
{
	if (!strcmp(k, "arg") && C.argc < MAXV - 1) C.argv[C.argc++] = v;
	else if (!strcmp(k, "env") && C.envc < MAXV - 1) C.env[C.envc++] = v;
	else if (!strcmp(k, "bind_src")) C.bind_src[C.nbinds] = v;
	else if (!strcmp(k, "bind_dst")) C.bind_dst[C.nbinds] = v;
	else if (!strcmp(k, "bind_ro")) C.bind_ro[C.nbinds++] = atoi(v);
	else if (!strcmp(k, "join")) {
		char *eq = strchr(v, '=');
		if (eq) { *eq = 0; C.ns_type[C.nns] = v; C.ns_path[C.nns++] = eq + 1; }
	}
	else if (!strcmp(k, "unshare")) C.unshare_flags |= ns_flag(v);
	else if (!strcmp(k, "mask")) C.mask[C.nmask++] = v;
	else if (!strcmp(k, "readonly")) C.ro_path[C.nro++] = v;
	else if (!strcmp(k, "rootfs_ro")) C.rootfs_ro = atoi(v);
	else if (!strcmp(k, "allow_escalation")) C.allow_escalation = atoi(v);
	else if (!strcmp(k, "seccomp")) C.seccomp[C.nseccomp++] = v;
	else if (!strcmp(k, "seccomp_namespaces")) C.seccomp_namespaces = atoi(v);
	else if (!strcmp(k, "rootfs")) C.rootfs = v;
	else if (!strcmp(k, "overlay")) C.overlay = v;
	else if (!strcmp(k, "hostname")) C.hostname = v;
	else if (!strcmp(k, "cwd")) C.cwd = v;
	else if (!strcmp(k, "user")) C.user = v;
	else if (!strcmp(k, "log")) C.log = v;
	else if (!strcmp(k, "sock")) C.sock = v;
	else if (!strcmp(k, "exit")) C.exitfile = v;
	else if (!strcmp(k, "ptmx")) C.ptmx = v;
	else if (!strcmp(k, "cgroup")) C.cgroup = v;
	else if (!strcmp(k, "cgroup_procs")) C.procs[C.nprocs++] = v;
	else if (!strcmp(k, "tty")) C.tty = atoi(v);
	else if (!strcmp(k, "stdin")) C.stdin_open = atoi(v);
	else if (!strcmp(k, "rows")) C.rows = atoi(v);
	else if (!strcmp(k, "cols")) C.cols = atoi(v);
	else if (!strcmp(k, "caps")) C.caps = strtoull(v, NULL, 0);
}

/* Size every list of the config for `pairs` entries (no list can hold more, every entry being
 * one key/value pair), so that set_key never drops one; -1 when out of memory. */
static int alloc_lists(int pairs)
{
	size_t n = (size_t)pairs + 1;
	C.bind_src = calloc(n, sizeof(char *)); C.bind_dst = calloc(n, sizeof(char *));
	C.bind_ro = calloc(n, sizeof(int));
	C.ns_type = calloc(n, sizeof(char *)); C.ns_path = calloc(n, sizeof(char *));
	C.mask = calloc(n, sizeof(char *)); C.ro_path = calloc(n, sizeof(char *));
	C.procs = calloc(n, sizeof(char *)); C.seccomp = calloc(n, sizeof(char *));
	return C.bind_src && C.bind_dst && C.bind_ro && C.ns_type && C.ns_path && C.mask && C.ro_path &&
	       C.procs && C.seccomp ? 0 : -1;
}

/* The number of key/value pairs in the n bytes of buf (NUL-separated, as load_config reads them). */
static int count_pairs(const char *buf, ssize_t n)
{
	int pairs = 0;
	for (const char *p = buf; p < buf + n; p += strlen(p) + 1) pairs++;
	return pairs / 2 + 1;
}

/* Read the config from PATH, or from stdin (a pipe from the runtime) when PATH is "-". */
static int load_config(const char *path)
{
	static char buf[1 << 17];
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	ssize_t n = 0, k;
	if (fd < 0) return -1;
	while (n < (ssize_t)sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += k;
	if (fd > 0) close(fd);
	if (k < 0) return -1;
	buf[n] = 0;
	if (alloc_lists(count_pairs(buf, n)) < 0) return -1;
	C.caps = ~0ULL;
	for (char *p = buf; p < buf + n;) {
		char *k = p; p += strlen(p) + 1;
		if (p >= buf + n) break;
		char *v = p; p += strlen(p) + 1;
		set_key(k, v);
	}
	return 0;
}

/* ---------- the container recipe (runs in the child) ---------- */

static void mkdirs(const char *path, mode_t mode)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') { *p = 0; mkdir(tmp, mode); *p = '/'; }
	mkdir(tmp, mode);
}

static void xmount(const char *src, const char *dst, const char *type,
		   unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		die("mount %s on %s", type ? type : src, dst);
}

static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) die("loopback flags");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) die("loopback up");
	close(fd);
}

static void unshare_or_setns(void)
{
	int fds[C.nns + 1];
	for (int i = 0; i < C.nns; i++)
		if ((fds[i] = open(C.ns_path[i], O_RDONLY | O_CLOEXEC)) < 0)
			die("open namespace %s", C.ns_path[i]);
	for (int i = 0; i < C.nns; i++) {   /* mnt last: it changes our root */
		if (!strcmp(C.ns_type[i], "mnt") || !strcmp(C.ns_type[i], "pid")) continue;
		if (setns(fds[i], 0) < 0) die("setns %s", C.ns_path[i]);
	}
	for (int i = 0; i < C.nns; i++)
		if (!strcmp(C.ns_type[i], "mnt") && setns(fds[i], 0) < 0)
			die("setns %s", C.ns_path[i]);
	for (int i = 0; i < C.nns; i++) close(fds[i]);
	int flags = C.unshare_flags & ~(CLONE_NEWPID | CLONE_NEWCGROUP);
	if (flags && unshare(flags) < 0) die("unshare");
	if (flags & CLONE_NEWNET) loopback_up();
}

static void make_dev(const char *root)
{
	static const struct { const char *n; int maj, min; } devs[] = {
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8},
		{"urandom", 1, 9}, {"tty", 5, 0},
	};
	char p[4096], q[4096];
	snprintf(p, sizeof p, "%s/dev", root);
	mkdir(p, 0755);
	xmount("tmpfs", p, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
	for (unsigned i = 0; i < sizeof devs / sizeof devs[0]; i++) {
		snprintf(p, sizeof p, "%s/dev/%s", root, devs[i].n);
		if (mknod(p, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) < 0)
			die("mknod %s", p);
		chmod(p, 0666);
	}
	snprintf(p, sizeof p, "%s/dev/pts", root); mkdir(p, 0755);
	xmount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC,
	       "newinstance,ptmxmode=0666,mode=0620,gid=5");
	snprintf(p, sizeof p, "%s/dev/shm", root); mkdir(p, 01777);
	xmount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
	snprintf(p, sizeof p, "%s/dev/mqueue", root); mkdir(p, 0755);
	xmount("mqueue", p, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	static const char *links[][2] = {
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	};
	for (unsigned i = 0; i < sizeof links / sizeof links[0]; i++) {
		snprintf(q, sizeof q, "%s/dev/%s", root, links[i][1]);
		if (symlink(links[i][0], q) < 0) die("symlink %s", q);
	}
}

static void bind_volumes(const char *root)
{
	char dst[4096];
	struct stat st;
	for (int i = 0; i < C.nbinds; i++) {
		snprintf(dst, sizeof dst, "%s%s", root, C.bind_dst[i]);
		if (stat(C.bind_src[i], &st) < 0) die("bind %s", C.bind_src[i]);
		if (S_ISDIR(st.st_mode)) mkdirs(dst, 0755);
		else {
			char parent[4096];
			snprintf(parent, sizeof parent, "%s", dst);
			*strrchr(parent, '/') = 0;
			mkdirs(parent, 0755);
			close(open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
		}
		xmount(C.bind_src[i], dst, NULL, MS_BIND | MS_REC, NULL);
		if (C.bind_ro[i])
			xmount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
	}
}

static void mask_paths(void)
{
	struct stat st;
	for (int i = 0; i < C.nmask; i++) {
		if (stat(C.mask[i], &st) < 0) continue;
		if (S_ISDIR(st.st_mode))
			xmount("tmpfs", C.mask[i], "tmpfs", MS_RDONLY, "size=0");
		else
			xmount("/dev/null", C.mask[i], NULL, MS_BIND, NULL);
	}
	for (int i = 0; i < C.nro; i++) {
		if (stat(C.ro_path[i], &st) < 0) continue;
		xmount(C.ro_path[i], C.ro_path[i], NULL, MS_BIND | MS_REC, NULL);
		xmount(NULL, C.ro_path[i], NULL,
		       MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
}

static void setup_rootfs(void)
{
	const char *r = C.rootfs;
	char p[4096];
	xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (C.overlay) xmount("overlay", r, "overlay", 0, C.overlay);
	snprintf(p, sizeof p, "%s/proc", r); mkdir(p, 0555);
	xmount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	snprintf(p, sizeof p, "%s/sys", r); mkdir(p, 0555);
	xmount("sysfs", p, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
	make_dev(r);
	bind_volumes(r);
	if (chdir(r) < 0) die("chdir %s", r);
	if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root %s", r);
	if (umount2(".", MNT_DETACH) < 0) die("umount old root");
	if (chdir("/") < 0) die("chdir /");
	mask_paths();
	if (C.rootfs_ro)   /* the root only: /proc, /sys, /dev and volumes are mounts of their own */
		xmount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
}

/* ---------- user, capabilities, exec ---------- */

/* Find NAME (or numeric id) in an /etc/passwd-style file; fills field 2 and 3. */
static int lookup(const char *file, const char *name, long *id, long *gid)
{
	char line[1024];
	FILE *f = fopen(file, "re");
	if (!f) return -1;
	while (fgets(line, sizeof line, f)) {
		char *fields[4] = {0};
		char *s = line;
		for (int i = 0; i < 4 && s; i++) { fields[i] = strsep(&s, ":"); }
		if (!fields[2]) continue;
		if (!strcmp(fields[0], name) || !strcmp(fields[2], name)) {
			*id = atol(fields[2]);
			if (gid && fields[3]) *gid = atol(fields[3]);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -1;
}

static int is_number(const char *s) { return *s && strspn(s, "0123456789") == strlen(s); }

static void switch_user(void)
{
	long uid = 0, gid = 0;
	char spec[256], *group = NULL;
	if (!C.user || !*C.user) { if (setgroups(0, NULL) < 0) die("setgroups"); return; }
	snprintf(spec, sizeof spec, "%s", C.user);
	if ((group = strchr(spec, ':'))) *group++ = 0;
	if (lookup("/etc/passwd", spec, &uid, &gid) < 0) {
		if (!is_number(spec)) die("unable to find user %s: no matching entries in passwd file", spec);
		uid = atol(spec); gid = 0;
	}
	if (group && lookup("/etc/group", group, &gid, NULL) < 0) {
		if (!is_number(group)) die("unable to find group %s", group);
		gid = atol(group);
	}
	gid_t g = gid;
	if (setgroups(1, &g) < 0) die("setgroups");
	if (setgid(gid) < 0) die("setgid %ld", gid);
	if (setuid(uid) < 0) die("setuid %ld", uid);
}

/* The seccomp filter of the config, loaded while the child still holds CAP_SYS_ADMIN (so it
 * needs no no_new_privs of its own: that stays the config's choice). Every system call is
 * allowed except C.seccomp (EPERM); with C.seccomp_namespaces, clone with a namespace flag is
 * EPERM and clone3 ENOSYS (its flags are out of the filter's reach; libc falls back to clone).
 * Names this architecture lacks are skipped. */
static void load_seccomp(void)
{
	static const uint64_t ns_flags[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
	                                    CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};
	if (!C.nseccomp && !C.seccomp_namespaces) return;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) die("seccomp_init");
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp: no_new_privs attribute");
	for (int i = 0; i < C.nseccomp; i++) {
		int nr = seccomp_syscall_resolve_name(C.seccomp[i]);
		if (nr == __NR_SCMP_ERROR) continue;
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0) die("seccomp: refuse %s", C.seccomp[i]);
	}
	if (C.seccomp_namespaces) {
		for (unsigned i = 0; i < sizeof ns_flags / sizeof ns_flags[0]; i++)
			if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
			                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i])) < 0)
				die("seccomp: clone flags");
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0) die("seccomp: clone3");
	}
	int rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) { errno = -rc; die("seccomp_load"); }
}

static void drop_capabilities(void)
{
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) { if (fscanf(f, "%d", &last) != 1) last = 40; fclose(f); }
	for (int cap = 0; cap <= last; cap++) {
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
			C.caps &= ~(1ULL << cap);   /* not ours to give (e.g. a privileged container on a host without it) */
		else if (!(C.caps & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			die("drop capability %d", cap);
	}
	C.caps &= (last >= 63) ? ~0ULL : ((1ULL << (last + 1)) - 1);
}

static void set_capabilities(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (geteuid() == 0) {
		d[0].effective = d[0].permitted = d[0].inheritable = (uint32_t)C.caps;
		d[1].effective = d[1].permitted = d[1].inheritable = (uint32_t)(C.caps >> 32);
	}
	if (syscall(SYS_capset, &h, d) < 0) die("capset");
}

static char *env_get(const char *key)
{
	size_t n = strlen(key);
	for (int i = 0; i < C.envc; i++)
		if (!strncmp(C.env[i], key, n) && C.env[i][n] == '=') return C.env[i] + n + 1;
	return NULL;
}

static void exec_command(void)
{
	char path[4096];
	if (C.argc == 0) die("no command specified");
	C.argv[C.argc] = NULL;
	C.env[C.envc] = NULL;
	if (strchr(C.argv[0], '/')) {
		execve(C.argv[0], C.argv, C.env);
		die("exec %s", C.argv[0]);
	}
	char *search = env_get("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof dirs, "%s", search ? search : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	for (char *s = dirs, *d; (d = strsep(&s, ":"));) {
		snprintf(path, sizeof path, "%s/%s", *d ? d : ".", C.argv[0]);
		if (access(path, X_OK) == 0) {
			execve(path, C.argv, C.env);
			die("exec %s", path);
		}
	}
	errno = 0;
	die("exec: \"%s\": executable file not found in $PATH", C.argv[0]);
}

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static void send_fd(int sock, int fd)
{
	char data = 0, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof control };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &msg, 0) < 0) die("send the pty master");
}

/* -1 when the peer closed without sending one (the child failed). */
static int recv_fd(int sock)
{
	char data, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof control };
	int fd = -1;
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0) return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* A container with a tty gets it from its own devpts (as with runc, `tty` says
 * /dev/pts/0, also bound on /dev/console); the shim gets the master over pty_sock. */
static void container_pty(void)
{
	int unlock = 0, number;
	char path[64];
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0) die("open /dev/ptmx");
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (slave < 0 || ioctl(master, TIOCGPTN, &number) < 0) die("open the pty slave");
	if (C.rows && C.cols) {
		struct winsize ws = { .ws_row = C.rows, .ws_col = C.cols };
		ioctl(slave, TIOCSWINSZ, &ws);
	}
	snprintf(path, sizeof path, "/dev/pts/%d", number);
	close(open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	xmount(path, "/dev/console", NULL, MS_BIND, NULL);
	send_fd(pty_sock, master);
	close(master);
	close(pty_sock);
	if (ioctl(slave, TIOCSCTTY, 0) < 0) die("set the controlling tty");
	dup2(slave, 0); dup2(slave, 1); dup2(slave, 2);
	if (slave > 2) close(slave);
}

/* Child: wait until the helper has moved us into our v1 cgroups; its error is ours. */
static void wait_for_join(void)
{
	char msg[700];
	ssize_t n = read(joined_fd, msg, sizeof msg - 1);
	close(joined_fd);
	if (n == 1 && msg[0] == 'j') return;
	msg[n > 0 ? n : 0] = 0;
	errno = 0;
	die("%s", n > 0 ? msg : "join cgroup: the helper went away");
}

static void child(int ready_w, int go_r, int in_fd, int out_fd, int errout_fd, int slave)
{
	char b = 0;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (slave >= 0) {
		ioctl(slave, TIOCSCTTY, 0);
		dup2(slave, 0); dup2(slave, 1); dup2(slave, 2);
		if (slave > 2) close(slave);
	} else {
		dup2(in_fd, 0); dup2(out_fd, 1); dup2(errout_fd, 2);
	}
	unshare_or_setns();
	if (write(ready_w, &b, 1) < 0) _exit(127);
	close(ready_w);
	if (read(go_r, &b, 1) != 1) _exit(127);   /* go: network and init layer ready */
	close(go_r);
	if (C.rootfs) setup_rootfs();
	if (pty_sock >= 0) container_pty();
	if (C.hostname && sethostname(C.hostname, strlen(C.hostname)) < 0) die("sethostname");
	if (C.cwd) {
		mkdirs(C.cwd, 0755);
		if (chdir(C.cwd) < 0) die("chdir %s", C.cwd);
	}
	if (joined_fd >= 0) wait_for_join();
	if ((C.unshare_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0) die("unshare cgroup");
	load_seccomp();
	drop_capabilities();
	switch_user();
	set_capabilities();
	if (!C.allow_escalation && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
	exec_command();
}

/* ---------- supervision (runs in the shim) ---------- */

static int clients[MAXCLIENTS];
static char client_mode[MAXCLIENTS];
static int log_fd = -1;
static int pty_master = -1;

static void timestamp(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static void log_line(const char *stream, const char *s, size_t len)
{
	static char out[65536 * 6 + 256];
	char ts[64];
	size_t o = 0;
	timestamp(ts, sizeof ts);
	o += sprintf(out, "{\"log\":\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = c; }
		else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
		else if (c == '\r') { out[o++] = '\\'; out[o++] = 'r'; }
		else if (c == '\t') { out[o++] = '\\'; out[o++] = 't'; }
		else if (c < 0x20) o += sprintf(out + o, "\\u%04x", c);
		else out[o++] = c;
	}
	o += sprintf(out + o, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, ts);
	if (write(log_fd, out, o) < 0) {}
}

static void log_chunk(int stream, const char *buf, size_t n)
{
	const char *name = stream == 1 ? "stdout" : "stderr";
	size_t start = 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n') { log_line(name, buf + start, i + 1 - start); start = i + 1; }
	if (start < n) log_line(name, buf + start, n - start);
}

static void drop_client(int i) { close(clients[i]); clients[i] = -1; }

static void send_frame(int stream, const void *data, uint32_t n, int exit_only)
{
	unsigned char hdr[5] = { stream, n >> 24, n >> 16, n >> 8, n };
	for (int i = 0; i < MAXCLIENTS; i++) {
		if (clients[i] < 0 || (client_mode[i] == 'w' && !exit_only)) continue;
		if (write(clients[i], hdr, 5) != 5 || write(clients[i], data, n) != (ssize_t)n)
			drop_client(i);
	}
}

static void accept_client(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = { 2, 0 };
	char mode = 0;
	if (fd < 0) return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (read(fd, &mode, 1) != 1) { close(fd); return; }
	if (mode == 'r') {   /* resize: rows and cols, 2 bytes each, big endian */
		unsigned char sz[4];
		if (read(fd, sz, 4) == 4 && pty_master >= 0) {
			struct winsize ws = { .ws_row = sz[0] << 8 | sz[1], .ws_col = sz[2] << 8 | sz[3] };
			ioctl(pty_master, TIOCSWINSZ, &ws);
		}
		close(fd);
		return;
	}
	for (int i = 0; i < MAXCLIENTS; i++)
		if (clients[i] < 0) { clients[i] = fd; client_mode[i] = mode; return; }
	close(fd);
}

/* Returns 0 at EOF/EIO, else 1. */
static int pump(int fd, int stream)
{
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
	if (n <= 0) return 0;
	if (log_fd >= 0) log_chunk(stream, buf, n);
	send_frame(stream, buf, n, 0);
	return 1;
}

/* The exit file, written to a temp file and renamed (readers see all of it or nothing).
 * Not fsynced: after a power loss no container runs any more, and a lost or empty exit
 * file reads as exit code 255 (the runtime's rule for a vanished shim); an fsync kept
 * `pdocker run` waiting for the disk (0.5-4 ms here, and its `--rm` unlink after it). */
static void write_exit(int code)
{
	char tmp[4096], ts[64];
	timestamp(ts, sizeof ts);
	snprintf(tmp, sizeof tmp, "%s.tmp", C.exitfile);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return;
	dprintf(fd, "%d %s\n", code, ts);
	close(fd);
	rename(tmp, C.exitfile);
}

static int listen_socket(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t n = strlen(C.sock);
	if (n > sizeof sa.sun_path - 2) n = sizeof sa.sun_path - 2;
	memcpy(sa.sun_path + 1, C.sock, n);   /* abstract namespace */
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + 1 + n) < 0
	    || listen(fd, 16) < 0)
		return -1;
	return fd;
}

static int status_code(int st)
{
	if (WIFEXITED(st)) return WEXITSTATUS(st);
	if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
	return 255;
}

static void supervise(pid_t pid, int sfd, int lfd, int out, int err, int in)
{
	int out_open = out >= 0, err_open = err >= 0, code = -1, st;
	while (code < 0 || out_open || err_open) {
		struct pollfd p[4 + MAXCLIENTS];
		int n = 0, timeout = code < 0 ? -1 : 0;
		p[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		p[n++] = (struct pollfd){ lfd, POLLIN, 0 };
		p[n++] = (struct pollfd){ out_open ? out : -1, POLLIN, 0 };
		p[n++] = (struct pollfd){ err_open ? err : -1, POLLIN, 0 };
		for (int i = 0; i < MAXCLIENTS; i++)
			p[n++] = (struct pollfd){ client_mode[i] == 'a' ? clients[i] : -1, POLLIN, 0 };
		int r = poll(p, n, timeout);
		if (r < 0 && errno == EINTR) continue;
		if (r == 0) break;   /* child gone and its output drained */
		if (p[1].revents & POLLIN) accept_client(lfd);
		if (p[2].revents) out_open = pump(out, 1);
		if (p[3].revents) err_open = pump(err, 2);
		for (int i = 0; i < MAXCLIENTS; i++) {
			if (!p[4 + i].revents || clients[i] < 0) continue;
			char buf[4096];
			ssize_t k = read(clients[i], buf, sizeof buf);
			if (k > 0 && in >= 0) { if (write(in, buf, k) < 0) {} }
			else if (k == 0) {   /* stdin EOF: keep sending it output */
				if (in >= 0 && !C.tty) { close(in); in = -1; }
				client_mode[i] = 'o';
			} else if (k < 0) drop_client(i);
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) < 0) {}
			pid_t r;   /* the container, orphans it left us, the join helper */
			while ((r = waitpid(-1, &st, WNOHANG)) > 0)
				if (r == pid && code < 0) code = status_code(st);
		}
	}
	write_exit(code);
	uint32_t c = code;
	unsigned char be[4] = { c >> 24, c >> 16, c >> 8, c };
	send_frame(3, be, 4, 1);
}

/* A pty pair: the master (returned) and its slave in *slave. The master comes from C.ptmx
 * when given (an exec uses the container's own devpts, so `tty` names a path the container
 * can see), else from the host's /dev/ptmx. */
static int open_pty(int *slave)
{
	int unlock = 0;
	int master = open(C.ptmx ? C.ptmx : "/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0) return -1;
	*slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	return *slave < 0 ? -1 : master;
}

static void notify(int fd, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (write(fd, msg, strlen(msg)) < 0) {}
}

/* The cgroup v1 join, in a helper process forked before the pid namespace changes (a
 * pid written to cgroup.procs is read in the writer's pid namespace): read the child's
 * pid from PID_FD, write it into every cgroup.procs, then "j" (or the error) on REPORT.
 * Only those two descriptors stay open: no pipe of the start may wait on the helper. */
static void join_helper(int pid_fd, int report)
{
	char text[32], msg[700];
	int lo = pid_fd < report ? pid_fd : report, hi = pid_fd < report ? report : pid_fd;
	pid_t pid;
	if (lo > 3) close_range(3, lo - 1, 0);
	if (hi > lo + 1) close_range(lo + 1, hi - 1, 0);
	close_range(hi + 1, ~0U, 0);
	if (read(pid_fd, &pid, sizeof pid) != sizeof pid) _exit(1);   /* the start failed */
	int n = snprintf(text, sizeof text, "%d", pid);
	for (int i = 0; i < C.nprocs; i++) {
		int fd = open(C.procs[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, text, n) != n) {
			snprintf(msg, sizeof msg, "join cgroup %s: %s", C.procs[i], strerror(errno));
			if (write(report, msg, strlen(msg)) < 0) {}
			_exit(1);
		}
		close(fd);
	}
	if (write(report, "j", 1) < 0) {}
	_exit(0);
}

/* Fork the container's child. With a "cgroup" (a cgroup v2 directory) the child is born
 * in it: clone3 with CLONE_INTO_CGROUP, so nobody moves it later (a move costs an RCU
 * grace period, 10-14 ms here). Kernels before 5.7 lack that flag: the child is forked and
 * moved in by the shim. Returns what fork returns; -1 with errno set on failure. */
static pid_t fork_child(void)
{
	if (!C.cgroup) return fork();
	int cgfd = open(C.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0) return -1;
	struct clone3_args args = { .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = cgfd };
	pid_t pid = syscall(SYS_clone3, &args, sizeof args);
	if (pid < 0 && (errno == ENOSYS || errno == E2BIG || errno == EINVAL)) {
		pid = fork();
		if (pid > 0) {
			char procs[4096], text[32];
			snprintf(procs, sizeof procs, "%s/cgroup.procs", C.cgroup);
			int fd = open(procs, O_WRONLY | O_CLOEXEC);
			int n = snprintf(text, sizeof text, "%d", pid);
			if (fd < 0 || write(fd, text, n) != n) {
				int saved = errno;
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				errno = saved;
				pid = -1;
			}
			if (fd >= 0) close(fd);
		}
	}
	close(cgfd);   /* in the child too: it must not reach the container */
	return pid;
}

int main(int argc, char **argv)
{
	int notify_fd = 3, go_fd = 4;
	int ready[2], errp[2], in[2] = {-1, -1}, out[2] = {-1, -1}, errs[2] = {-1, -1};
	int master = -1;
	int slave = -1;
	char msg[1024];
	close_range(5, ~0U, 0);   /* nothing the caller left open may reach a container */
	if (argc != 2 || load_config(argv[1]) < 0) {
		fprintf(stderr, "usage: shim CONFIG|- (fd 3 notify, fd 4 go)\n");
		return 2;
	}
	pid_t d = fork();
	if (d < 0) return 1;
	if (d > 0) _exit(0);   /* daemonize: the runtime reaps this parent */
	setsid();
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0); dup2(null, 1); dup2(null, 2);
	if (null > 2) close(null);
	for (int i = 0; i < MAXCLIENTS; i++) clients[i] = -1;

	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) return 1;
	int late_pty = C.tty && C.rootfs && !C.ptmx, fdpass[2] = {-1, -1};
	if (late_pty) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fdpass) < 0) return 1;
	} else if (C.tty) {
		if ((master = open_pty(&slave)) < 0) {
			notify(notify_fd, "err open pty %s: %s\n", C.ptmx ? C.ptmx : "/dev/ptmx", strerror(errno));
			return 1;
		}
		if (C.rows && C.cols) {
			struct winsize ws = { .ws_row = C.rows, .ws_col = C.cols };
			ioctl(master, TIOCSWINSZ, &ws);
		}
	} else {
		if (C.stdin_open) { if (pipe2(in, O_CLOEXEC) < 0) return 1; }
		else { in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC); }
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errs, O_CLOEXEC) < 0) return 1;
	}
	int lfd = C.sock ? listen_socket() : -1;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	int joinp[2] = {-1, -1}, pidp[2] = {-1, -1};
	if (C.nprocs) {   /* v1: the join helper, started now so that it sees the host's pids */
		if (pipe2(joinp, O_CLOEXEC) < 0 || pipe2(pidp, O_CLOEXEC) < 0) {
			notify(notify_fd, "err pipe: %s\n", strerror(errno));
			return 1;
		}
		pid_t helper = fork();
		if (helper < 0) {
			notify(notify_fd, "err fork: %s\n", strerror(errno));
			return 1;
		}
		if (helper == 0) join_helper(pidp[0], joinp[1]);
		close(pidp[0]);
		close(joinp[1]);   /* the helper is the only writer: its death reads as EOF */
	}
	for (int i = 0; i < C.nns; i++) {
		if (strcmp(C.ns_type[i], "pid")) continue;
		int fd = open(C.ns_path[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) {
			notify(notify_fd, "err setns %s: %s\n", C.ns_path[i], strerror(errno));
			return 1;
		}
		close(fd);
	}
	if ((C.unshare_flags & CLONE_NEWPID) && unshare(CLONE_NEWPID) < 0) {
		notify(notify_fd, "err unshare pid: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork_child();
	if (pid < 0) {
		notify(notify_fd, "err fork%s%s: %s\n", C.cgroup ? " into cgroup " : "", C.cgroup ? C.cgroup : "",
		       strerror(errno));
		return 1;
	}
	if (pid == 0) {
		if (pidp[1] >= 0) close(pidp[1]);
		joined_fd = joinp[0];
		close(notify_fd); close(ready[0]); close(errp[0]);
		err_fd = errp[1];
		if (fdpass[0] >= 0) close(fdpass[0]);
		pty_sock = fdpass[1];
		child(ready[1], go_fd, in[0], out[1], errs[1], slave);
	}
	if (C.nprocs) {   /* the join runs from now on, while the child makes its namespaces */
		if (write(pidp[1], &pid, sizeof pid) < 0) {}
		close(pidp[1]);
		close(joinp[0]);
	}
	close(go_fd); close(ready[1]); close(errp[1]);
	if (slave >= 0) close(slave);   /* the master reads EIO once the child's side is gone */
	if (fdpass[1] >= 0) close(fdpass[1]);
	if (in[0] >= 0) close(in[0]);
	if (out[1] >= 0) close(out[1]);
	if (errs[1] >= 0) close(errs[1]);

	char b;
	if (read(ready[0], &b, 1) == 1)
		notify(notify_fd, "pid %d %d\n", getpid(), pid);
	if (late_pty) {
		master = recv_fd(fdpass[0]);
		close(fdpass[0]);
	}
	ssize_t n = read(errp[0], msg, sizeof msg - 1);
	if (n > 0) {
		msg[n] = 0;
		notify(notify_fd, "err %s\n", msg);
	} else {
		notify(notify_fd, "ok\n");
	}
	close(notify_fd);
	/* Opened only now, off the start's critical path: output waits in the pipes. */
	if (C.log) log_fd = open(C.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (master >= 0)
		pty_master = master, supervise(pid, sfd, lfd, master, -1, master);
	else
		supervise(pid, sfd, lfd, out[0], errs[0], in[1]);
	return 0;
}
