#define _GNU_SOURCE
// CWarrenShim implementation. See include/cwarren.h for the contract of each function.
//
// Invariants: functions return -errno and never leave file descriptors behind on failure.
// The child side of cwarren_spawn runs between fork and execve in a copy of a
// multi-threaded process: it calls only async-signal-safe functions (no malloc, no stdio,
// no locks) and writes its failure report with a single write().
// Threading: cwarren_netns_create switches namespaces only on a pthread it creates and
// joins; if switching that thread back fails it aborts the process rather than let a
// thread run in the wrong namespace.

#include "cwarren.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netlink.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

int cwarren_gettid(void) { return (int)syscall(SYS_gettid); }

int cwarren_setns_net(int fd) {
    return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

// MARK: network namespaces

const char *cwarren_netns_step_name(int step) {
    switch (step) {
    case CWARREN_NETNS_STEP_MKDIR: return "creating the namespace directory";
    case CWARREN_NETNS_STEP_MAKE_SHARED: return "making the namespace directory a shared mount";
    case CWARREN_NETNS_STEP_SELF_BIND: return "bind-mounting the namespace directory on itself";
    case CWARREN_NETNS_STEP_CREATE_FILE: return "creating the namespace file";
    case CWARREN_NETNS_STEP_THREAD: return "starting the namespace thread";
    case CWARREN_NETNS_STEP_SAVE_CURRENT: return "opening the current namespace";
    case CWARREN_NETNS_STEP_UNSHARE: return "unsharing a new network namespace";
    case CWARREN_NETNS_STEP_BIND_MOUNT: return "bind-mounting the new namespace";
    case CWARREN_NETNS_STEP_UMOUNT: return "unmounting the namespace";
    case CWARREN_NETNS_STEP_UNLINK: return "removing the namespace file";
    default: return "unknown step";
    }
}

static int prepare_rundir(const char *rundir, int *failed_step) {
    if (mkdir(rundir, S_IRWXU | S_IRGRP | S_IXGRP | S_IROTH | S_IXOTH) != 0 && errno != EEXIST) {
        *failed_step = CWARREN_NETNS_STEP_MKDIR;
        return -errno;
    }
    // iproute2 (ip/ipnetns.c netns_add): make the directory a shared mount point so that
    // namespace mounts propagate into other mount namespaces; if it is not a mount point
    // yet (EINVAL), bind-mount it on itself once and retry.
    int made_mount = 0;
    while (mount("", rundir, "none", MS_SHARED | MS_REC, NULL) != 0) {
        if (errno != EINVAL || made_mount) {
            *failed_step = CWARREN_NETNS_STEP_MAKE_SHARED;
            return -errno;
        }
        if (mount(rundir, rundir, "none", MS_BIND | MS_REC, NULL) != 0) {
            *failed_step = CWARREN_NETNS_STEP_SELF_BIND;
            return -errno;
        }
        made_mount = 1;
    }
    return 0;
}

struct netns_create_job {
    const char *path;
    int result;
    int step;
};

static void *netns_create_thread(void *arg) {
    struct netns_create_job *job = arg;
    int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0) {
        job->result = -errno;
        job->step = CWARREN_NETNS_STEP_SAVE_CURRENT;
        return NULL;
    }
    if (unshare(CLONE_NEWNET) != 0) {
        job->result = -errno;
        job->step = CWARREN_NETNS_STEP_UNSHARE;
        close(saved);
        return NULL;
    }
    if (mount("/proc/thread-self/ns/net", job->path, "none", MS_BIND, NULL) != 0) {
        job->result = -errno;
        job->step = CWARREN_NETNS_STEP_BIND_MOUNT;
    } else {
        job->result = 0;
    }
    if (setns(saved, CLONE_NEWNET) != 0) {
        abort(); // a thread must never run on in a namespace it was not meant to be in
    }
    close(saved);
    return NULL;
}

int cwarren_netns_create(const char *rundir, const char *path, int *failed_step) {
    int step = 0;
    int r = prepare_rundir(rundir, &step);
    if (r != 0) {
        *failed_step = step;
        return r;
    }
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) {
        *failed_step = CWARREN_NETNS_STEP_CREATE_FILE;
        return -errno;
    }
    close(fd);
    struct netns_create_job job = { path, 0, 0 };
    pthread_t thread;
    int e = pthread_create(&thread, NULL, netns_create_thread, &job);
    if (e != 0) {
        unlink(path);
        *failed_step = CWARREN_NETNS_STEP_THREAD;
        return -e;
    }
    pthread_join(thread, NULL);
    if (job.result != 0) {
        unlink(path);
        *failed_step = job.step;
        return job.result;
    }
    return 0;
}

int cwarren_netns_delete(const char *path, int *failed_step) {
    if (umount2(path, MNT_DETACH) != 0) {
        // EINVAL: not a mount point (a stale file) — still remove the file.
        if (errno != EINVAL) {
            *failed_step = CWARREN_NETNS_STEP_UMOUNT;
            return -errno;
        }
    }
    if (unlink(path) != 0) {
        *failed_step = CWARREN_NETNS_STEP_UNLINK;
        return -errno;
    }
    return 0;
}

// MARK: TAP

const char *cwarren_tap_step_name(int step) {
    switch (step) {
    case 1: return "opening /dev/net/tun";
    case 2: return "TUNSETIFF";
    case 3: return "TUNSETPERSIST";
    default: return "unknown step";
    }
}

int cwarren_tap_create(const char *name, int persist, int *failed_step) {
    if (strlen(name) >= IFNAMSIZ) {
        *failed_step = 2;
        return -ENAMETOOLONG;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        *failed_step = 1;
        return -errno;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        int e = errno;
        close(fd);
        *failed_step = 2;
        return -e;
    }
    if (!persist) return fd;
    if (ioctl(fd, TUNSETPERSIST, 1) != 0) {
        int e = errno;
        close(fd);
        *failed_step = 3;
        return -e;
    }
    close(fd);
    return 0;
}

// MARK: AF_PACKET

const char *cwarren_packet_step_name(int step) {
    switch (step) {
    case CWARREN_PACKET_STEP_SOCKET: return "socket(AF_PACKET, SOCK_RAW)";
    case CWARREN_PACKET_STEP_IFINDEX: return "looking up the interface";
    case CWARREN_PACKET_STEP_VNET_HDR: return "PACKET_VNET_HDR";
    case CWARREN_PACKET_STEP_IGNORE_OUTGOING: return "PACKET_IGNORE_OUTGOING";
    case CWARREN_PACKET_STEP_QDISC_BYPASS: return "PACKET_QDISC_BYPASS";
    case CWARREN_PACKET_STEP_RCVBUF: return "SO_RCVBUFFORCE";
    case CWARREN_PACKET_STEP_SNDBUF: return "SO_SNDBUFFORCE";
    case CWARREN_PACKET_STEP_BIND: return "bind";
    case CWARREN_PACKET_STEP_PROMISC: return "PACKET_ADD_MEMBERSHIP(PACKET_MR_PROMISC)";
    default: return "unknown step";
    }
}

int cwarren_packet_open(const char *ifname, const struct cwarren_packet_options *o,
                        int *ifindex, int *failed_step) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
        *failed_step = CWARREN_PACKET_STEP_SOCKET;
        return -errno;
    }
    int one = 1, step = 0;
    unsigned idx = if_nametoindex(ifname);
    if (idx == 0) { step = CWARREN_PACKET_STEP_IFINDEX; goto fail; }
    if (o->vnet_header &&
        setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) {
        step = CWARREN_PACKET_STEP_VNET_HDR; goto fail;
    }
    if (o->ignore_outgoing &&
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0) {
        step = CWARREN_PACKET_STEP_IGNORE_OUTGOING; goto fail;
    }
    if (o->qdisc_bypass &&
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) {
        step = CWARREN_PACKET_STEP_QDISC_BYPASS; goto fail;
    }
    if (o->rcvbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &o->rcvbuf, sizeof o->rcvbuf) != 0) {
        step = CWARREN_PACKET_STEP_RCVBUF; goto fail;
    }
    if (o->sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &o->sndbuf, sizeof o->sndbuf) != 0) {
        step = CWARREN_PACKET_STEP_SNDBUF; goto fail;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)idx;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        step = CWARREN_PACKET_STEP_BIND; goto fail;
    }
    if (o->promiscuous) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof mr);
        mr.mr_ifindex = (int)idx;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) != 0) {
            step = CWARREN_PACKET_STEP_PROMISC; goto fail;
        }
    }
    *ifindex = (int)idx;
    return fd;
fail:;
    int e = errno;
    close(fd);
    *failed_step = step;
    return -e;
}

size_t cwarren_mmsghdr_size(void) { return sizeof(struct mmsghdr); }

void cwarren_mmsg_setup(void *msgvec, struct iovec *iov, unsigned count,
                        void *frames, size_t slot_size, void *headers, size_t header_size) {
    struct mmsghdr *m = msgvec;
    memset(m, 0, sizeof *m * count);
    for (unsigned i = 0; i < count; i++) {
        if (headers) {
            iov[2 * i].iov_base = (char *)headers + i * header_size;
            iov[2 * i].iov_len = header_size;
            iov[2 * i + 1].iov_base = (char *)frames + i * slot_size;
            iov[2 * i + 1].iov_len = slot_size;
            m[i].msg_hdr.msg_iov = &iov[2 * i];
            m[i].msg_hdr.msg_iovlen = 2;
        } else {
            iov[i].iov_base = (char *)frames + i * slot_size;
            iov[i].iov_len = slot_size;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
    }
}

void cwarren_mmsg_set_lengths(void *msgvec, unsigned count, const size_t *lengths) {
    struct mmsghdr *m = msgvec;
    for (unsigned i = 0; i < count; i++) {
        struct msghdr *h = &m[i].msg_hdr;
        h->msg_iov[h->msg_iovlen - 1].iov_len = lengths[i];
    }
}

int cwarren_packet_enable_auxdata(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) == 0 ? 0 : -errno;
}

size_t cwarren_auxdata_control_size(void) { return CMSG_SPACE(sizeof(struct tpacket_auxdata)); }

void cwarren_mmsg_reset_control(void *msgvec, unsigned count, void *control, size_t control_size) {
    struct mmsghdr *m = msgvec;
    for (unsigned i = 0; i < count; i++) {
        m[i].msg_hdr.msg_control = (char *)control + i * control_size;
        m[i].msg_hdr.msg_controllen = control_size;
    }
}

unsigned cwarren_mmsg_restore_vlan(const void *msgvec, unsigned count, void *frames, size_t slot_size,
                                   size_t *lengths) {
    const struct mmsghdr *m = msgvec;
    unsigned lost = 0;
    for (unsigned i = 0; i < count; i++) {
        struct msghdr *h = (struct msghdr *)&m[i].msg_hdr;
        if (!h->msg_control) continue;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
            struct tpacket_auxdata aux;
            memcpy(&aux, CMSG_DATA(c), sizeof aux);
            if (!(aux.tp_status & TP_STATUS_VLAN_VALID)) break;
            size_t len = lengths[i];
            if (len < 12 || len + 4 > slot_size) { lost++; break; }
            unsigned char *f = (unsigned char *)frames + i * slot_size;
            memmove(f + 16, f + 12, len - 12);
            uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux.tp_vlan_tpid : 0x8100;
            f[12] = tpid >> 8; f[13] = tpid & 0xff;
            f[14] = aux.tp_vlan_tci >> 8; f[15] = aux.tp_vlan_tci & 0xff;
            lengths[i] = len + 4;
            break;
        }
    }
    return lost;
}

void cwarren_mmsg_reset_lengths(void *msgvec, unsigned count, size_t slot_size) {
    struct mmsghdr *m = msgvec;
    for (unsigned i = 0; i < count; i++) {
        struct msghdr *h = &m[i].msg_hdr;
        h->msg_iov[h->msg_iovlen - 1].iov_len = slot_size;
        h->msg_flags = 0;
        m[i].msg_len = 0;
    }
}

unsigned cwarren_mmsg_get_lengths(const void *msgvec, unsigned count, size_t header_size,
                                  size_t slot_size, size_t *lengths) {
    const struct mmsghdr *m = msgvec;
    unsigned truncated = 0;
    for (unsigned i = 0; i < count; i++) {
        size_t n = m[i].msg_len;
        n = n > header_size ? n - header_size : 0;
        if (n > slot_size || (m[i].msg_hdr.msg_flags & MSG_TRUNC)) {
            truncated++;
            if (n > slot_size) n = slot_size;
        }
        lengths[i] = n;
    }
    return truncated;
}

int cwarren_recvmmsg(int fd, void *msgvec, unsigned vlen, int flags) {
    int n = recvmmsg(fd, msgvec, vlen, flags, NULL);
    return n < 0 ? -errno : n;
}

int cwarren_sendmmsg(int fd, void *msgvec, unsigned vlen, int flags) {
    int n = sendmmsg(fd, msgvec, vlen, flags);
    return n < 0 ? -errno : n;
}

int cwarren_msg_dontwait(void) { return MSG_DONTWAIT; }
int cwarren_msg_trunc(void) { return MSG_TRUNC; }

// MARK: processes

const char *cwarren_spawn_step_name(int step) {
    switch (step) {
    case CWARREN_SPAWN_STEP_PIPE: return "creating the status pipe";
    case CWARREN_SPAWN_STEP_FORK: return "fork";
    case CWARREN_SPAWN_STEP_SIGNALS: return "resetting signals";
    case CWARREN_SPAWN_STEP_SETSID: return "setsid";
    case CWARREN_SPAWN_STEP_SETNS: return "entering the network namespace";
    case CWARREN_SPAWN_STEP_UNSHARE_MOUNT: return "unsharing the mount namespace";
    case CWARREN_SPAWN_STEP_MAKE_PRIVATE: return "making / private";
    case CWARREN_SPAWN_STEP_BIND_MOUNT: return "bind-mounting";
    case CWARREN_SPAWN_STEP_CHDIR: return "changing the working directory";
    case CWARREN_SPAWN_STEP_DUP2: return "redirecting stdin/stdout/stderr";
    case CWARREN_SPAWN_STEP_CLOSE_FDS: return "closing inherited descriptors";
    case CWARREN_SPAWN_STEP_EXEC: return "execve";
    case CWARREN_SPAWN_STEP_REPORT: return "reading the child's status";
    default: return "unknown step";
    }
}

struct spawn_report {
    int step;
    int error;
    int mount_index;
};

static void child_fail(int fd, int step, int mount_index) __attribute__((noreturn));
static void child_fail(int fd, int step, int mount_index) {
    struct spawn_report r = { step, errno, mount_index };
    ssize_t ignored = write(fd, &r, sizeof r);
    (void)ignored;
    _exit(127);
}

static void close_from(int lowest, int keep) {
    // close_range(lowest, keep-1) and (keep+1, ~0); fall back to a loop on old kernels.
    if (keep >= lowest) {
        if (keep > lowest && syscall(SYS_close_range, lowest, keep - 1, 0) != 0) {
            for (int fd = lowest; fd < keep; fd++) close(fd);
        }
        if (syscall(SYS_close_range, keep + 1, ~0U, 0) != 0) {
            for (int fd = keep + 1; fd < 65536; fd++) close(fd);
        }
    } else if (syscall(SYS_close_range, lowest, ~0U, 0) != 0) {
        for (int fd = lowest; fd < 65536; fd++) close(fd);
    }
}

int cwarren_spawn(const struct cwarren_spawn_request *req, pid_t *pid_out,
                  int *failed_step, int *failed_mount) {
    *failed_mount = -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        *failed_step = CWARREN_SPAWN_STEP_PIPE;
        return -errno;
    }
    // Block all signals across fork so no handler of the parent runs in the child before
    // the dispositions are reset.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        // ---- child: async-signal-safe calls only ----
        int rfd = p[0], wfd = p[1];
        close(rfd);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) {
            if (s == SIGKILL || s == SIGSTOP) continue;
            sigaction(s, &dfl, NULL); // fails harmlessly for the signals glibc reserves
        }
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) child_fail(wfd, CWARREN_SPAWN_STEP_SIGNALS, -1);
        if (setsid() < 0) child_fail(wfd, CWARREN_SPAWN_STEP_SETSID, -1);
        if (req->netns_fd >= 0 && setns(req->netns_fd, CLONE_NEWNET) != 0)
            child_fail(wfd, CWARREN_SPAWN_STEP_SETNS, -1);
        if (req->mount_count > 0) {
            if (unshare(CLONE_NEWNS) != 0) child_fail(wfd, CWARREN_SPAWN_STEP_UNSHARE_MOUNT, -1);
            if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
                child_fail(wfd, CWARREN_SPAWN_STEP_MAKE_PRIVATE, -1);
            for (int i = 0; i < req->mount_count; i++) {
                if (mount(req->mounts[i].source, req->mounts[i].target, NULL, MS_BIND | MS_REC, NULL) != 0)
                    child_fail(wfd, CWARREN_SPAWN_STEP_BIND_MOUNT, i);
            }
        }
        if (chdir(req->working_directory) != 0) child_fail(wfd, CWARREN_SPAWN_STEP_CHDIR, -1);
        // Move the status pipe out of the way of 0..2 before redirecting them.
        if (wfd <= 2) {
            int moved = fcntl(wfd, F_DUPFD_CLOEXEC, 3);
            if (moved < 0) child_fail(wfd, CWARREN_SPAWN_STEP_DUP2, -1);
            wfd = moved;
        }
        if (dup2(req->stdin_fd, 0) < 0 || dup2(req->log_fd, 1) < 0 || dup2(req->log_fd, 2) < 0)
            child_fail(wfd, CWARREN_SPAWN_STEP_DUP2, -1);
        close_from(3, wfd); // wfd is close-on-exec: it goes away at execve
        execve(req->path, req->argv, req->envp);
        child_fail(wfd, CWARREN_SPAWN_STEP_EXEC, -1);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        *failed_step = CWARREN_SPAWN_STEP_FORK;
        return -fork_errno;
    }
    struct spawn_report r;
    ssize_t n;
    do {
        n = read(p[0], &r, sizeof r);
    } while (n < 0 && errno == EINTR);
    int read_errno = errno;
    close(p[0]);
    if (n == 0) {
        *pid_out = pid; // EOF: the pipe was closed by a successful execve
        return 0;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (n == (ssize_t)sizeof r) {
        *failed_step = r.step;
        *failed_mount = r.mount_index;
        return -r.error;
    }
    *failed_step = CWARREN_SPAWN_STEP_REPORT;
    return n < 0 ? -read_errno : -EPROTO;
}

int cwarren_pidfd_open(pid_t pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return -errno;
    // pidfds are close-on-exec by default.
    return fd;
}

int cwarren_pidfd_send_signal(int pidfd, int sig) {
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
}

int cwarren_wait_nohang(pid_t pid, int *kind, int *code) {
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (r == 0) return 0;
    if (WIFEXITED(status)) {
        *kind = 1;
        *code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        *kind = 2;
        *code = WTERMSIG(status);
    } else {
        *kind = 0;
        *code = status;
    }
    return r;
}

int cwarren_pipe(int fds[2], int nonblocking) {
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)) == 0 ? 0 : -errno;
}

int cwarren_flock_exclusive_nonblocking(int fd) {
    int r;
    do {
        r = flock(fd, LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : -errno;
}

int cwarren_flock_unlock(int fd) { return flock(fd, LOCK_UN) == 0 ? 0 : -errno; }

int cwarren_set_rcvbuf_force(int fd, int bytes) {
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) == 0 ? 0 : -errno;
}

// MARK: epoll and eventfd

int cwarren_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int epoll_control(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

int cwarren_epoll_add(int epfd, int fd, uint32_t events, uint64_t data) {
    return epoll_control(epfd, EPOLL_CTL_ADD, fd, events, data);
}

int cwarren_epoll_modify(int epfd, int fd, uint32_t events, uint64_t data) {
    return epoll_control(epfd, EPOLL_CTL_MOD, fd, events, data);
}

int cwarren_epoll_delete(int epfd, int fd) {
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

int cwarren_epoll_wait(int epfd, struct cwarren_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event buf[256];
    if (max > 256) max = 256;
    if (max < 1) return -EINVAL;
    int n = epoll_wait(epfd, buf, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        out[i].events = buf[i].events;
        out[i].data = buf[i].data.u64;
    }
    return n;
}

int cwarren_eventfd(unsigned initial, int nonblocking) {
    int fd = eventfd(initial, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0));
    return fd < 0 ? -errno : fd;
}

// MARK: netlink

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

int cwarren_netlink_enable_ext_ack(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) == 0 ? 0 : -errno;
}

int cwarren_nlmsgerr_errno(const void *p) {
    const struct nlmsgerr *e = p;
    return e->error < 0 ? -e->error : e->error;
}

const char *cwarren_nlmsgerr_message(const void *p) {
    const struct nlmsgerr *e = p;
    const struct nlmsghdr *h = (const struct nlmsghdr *)((const char *)p - NLMSG_HDRLEN);
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
    size_t offset = sizeof *e;
    if (!(h->nlmsg_flags & NLM_F_CAPPED) && e->msg.nlmsg_len > NLMSG_HDRLEN)
        offset += e->msg.nlmsg_len - NLMSG_HDRLEN;
    offset = NLA_ALIGN(offset);
    const char *cursor = (const char *)p + offset;
    const char *end = (const char *)h + h->nlmsg_len;
    while (cursor + NLA_HDRLEN <= end) {
        const struct nlattr *a = (const struct nlattr *)cursor;
        if (a->nla_len < NLA_HDRLEN || cursor + a->nla_len > end) break;
        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a->nla_len > NLA_HDRLEN) {
            const char *text = cursor + NLA_HDRLEN;
            size_t n = a->nla_len - NLA_HDRLEN;
            if (text[n - 1] == '\0') return text;
            return NULL;
        }
        cursor += NLA_ALIGN(a->nla_len);
    }
    return NULL;
}

// MARK: TPACKET_V2 receive ring

int cwarren_rx_ring_open(int fd, size_t max_frame, size_t header_size, unsigned min_frames, cwarren_rx_ring *ring) {
    memset(ring, 0, sizeof *ring);
    int version = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) return -errno;
    // The kernel puts the frame at TPACKET_ALIGN(hdrlen + 16) + vnet header - MAC length
    // into the slot; leave that much room (and some) before the largest frame.
    size_t need = TPACKET_ALIGN(TPACKET2_HDRLEN + 16) + header_size + max_frame + 4 /* VLAN */;
    unsigned frame_size = (unsigned)TPACKET_ALIGN(need);
    unsigned block_size = 1u << 16;
    while (block_size < frame_size) block_size <<= 1;
    unsigned per_block = block_size / frame_size;
    unsigned blocks = (min_frames + per_block - 1) / per_block;
    if (blocks == 0) blocks = 1;
    struct tpacket_req req = {
        .tp_block_size = block_size, .tp_block_nr = blocks,
        .tp_frame_size = frame_size, .tp_frame_nr = blocks * per_block,
    };
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        int e = errno;
        version = TPACKET_V1;
        (void)setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version);
        return -e;
    }
    size_t size = (size_t)block_size * blocks;
    // Not MAP_LOCKED: a quiet port's slots are mapped into the agent only once used.
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        struct tpacket_req none = {0};
        (void)setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &none, sizeof none);
        return -e;
    }
    ring->map = map;
    ring->map_size = size;
    ring->frame_size = frame_size;
    ring->frame_count = blocks * per_block;
    ring->frames_per_block = per_block;
    ring->block_size = block_size;
    ring->next = 0;
    return 0;
}

void cwarren_rx_ring_close(cwarren_rx_ring *ring) {
    if (ring->map) munmap(ring->map, ring->map_size);
    ring->map = NULL;
}

static inline struct tpacket2_hdr *cwarren_ring_frame(const cwarren_rx_ring *ring, unsigned i) {
    unsigned block = i / ring->frames_per_block, slot = i % ring->frames_per_block;
    return (struct tpacket2_hdr *)((char *)ring->map + (size_t)block * ring->block_size + (size_t)slot * ring->frame_size);
}

unsigned cwarren_rx_ring_receive(cwarren_rx_ring *ring, unsigned capacity, void *frames, size_t slot_size,
                                 void *headers, size_t header_size, size_t *lengths,
                                 unsigned long *truncated, unsigned long *vlan_lost) {
    unsigned n = 0;
    while (n < capacity) {
        struct tpacket2_hdr *h = cwarren_ring_frame(ring, ring->next);
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER)) break;
        const unsigned char *data = (const unsigned char *)h + h->tp_mac;
        size_t len = h->tp_snaplen;
        int vlan = (status & TP_STATUS_VLAN_VALID) != 0;
        if (h->tp_snaplen < h->tp_len || len > slot_size) {
            (*truncated)++;
        } else {
            unsigned char *f = (unsigned char *)frames + (size_t)n * slot_size;
            if (header_size > 0) memcpy((char *)headers + (size_t)n * header_size, data - header_size, header_size);
            if (vlan && (len < 12 || len + 4 > slot_size)) {
                (*vlan_lost)++;
                vlan = 0;
            }
            if (vlan) {
                uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid : 0x8100;
                memcpy(f, data, 12);
                f[12] = tpid >> 8; f[13] = tpid & 0xff;
                f[14] = h->tp_vlan_tci >> 8; f[15] = h->tp_vlan_tci & 0xff;
                memcpy(f + 16, data + 12, len - 12);
                lengths[n] = len + 4;
            } else {
                memcpy(f, data, len);
                lengths[n] = len;
            }
            n++;
        }
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        ring->next = (ring->next + 1) % ring->frame_count;
    }
    return n;
}
