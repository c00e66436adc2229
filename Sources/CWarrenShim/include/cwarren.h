// CWarrenShim — the few GNU/Linux-only system calls and struct layouts that Swift's Glibc
// module does not expose (it is built without _GNU_SOURCE), wrapped as plain C functions.
//
// Conventions: every function returns 0 (or a non-negative value) on success and
// -errno on failure, never touching the caller's errno contract. Where a call has
// several steps, `*failed_step` names the step that failed (see the *_step_name
// functions) so Swift can produce an error that says what went wrong.
// Threading: all functions are thread-safe; the netns functions only ever change the
// namespace of a dedicated thread they create themselves (never the caller's), except
// cwarren_setns, which changes the calling thread's and is meant for threads the caller
// created for exactly that purpose.
#ifndef CWARREN_SHIM_H
#define CWARREN_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: threads and namespaces

/// The kernel thread id of the calling thread.
int cwarren_gettid(void);

/// setns(fd, CLONE_NEWNET) on the calling thread. 0 or -errno.
int cwarren_setns_net(int fd);

/// Steps of cwarren_netns_create / cwarren_netns_prepare_rundir.
enum {
    CWARREN_NETNS_STEP_MKDIR = 1,
    CWARREN_NETNS_STEP_MAKE_SHARED = 2,
    CWARREN_NETNS_STEP_SELF_BIND = 3,
    CWARREN_NETNS_STEP_CREATE_FILE = 4,
    CWARREN_NETNS_STEP_THREAD = 5,
    CWARREN_NETNS_STEP_SAVE_CURRENT = 6,
    CWARREN_NETNS_STEP_UNSHARE = 7,
    CWARREN_NETNS_STEP_BIND_MOUNT = 8,
    CWARREN_NETNS_STEP_UMOUNT = 9,
    CWARREN_NETNS_STEP_UNLINK = 10,
};
const char *cwarren_netns_step_name(int step);

/// Like iproute2's `ip netns add`: makes `rundir` (e.g. /run/netns) exist and be a shared
/// mount point (bind-mounting it on itself first if it is not a mount point), creates
/// `rundir/name`, unshares a fresh network namespace on a short-lived dedicated thread and
/// bind-mounts that thread's namespace on the file. On failure after the file was created
/// the file is removed. Returns 0 or -errno; `*failed_step` is set on failure.
int cwarren_netns_create(const char *rundir, const char *path, int *failed_step);

/// Like `ip netns delete`: lazy-unmounts `path` and unlinks it. 0 or -errno.
int cwarren_netns_delete(const char *path, int *failed_step);

// MARK: TUN/TAP

/// Opens /dev/net/tun in the calling thread's namespace and creates a TAP interface
/// `name` (IFF_TAP|IFF_NO_PI); when `persist` the interface survives the close
/// (TUNSETPERSIST). Returns 0 (persist, fd closed) or the open fd (not persist), or -errno.
int cwarren_tap_create(const char *name, int persist, int *failed_step);
const char *cwarren_tap_step_name(int step);

// MARK: AF_PACKET sockets

/// Options for cwarren_packet_open. Zero means "off" / "kernel default".
struct cwarren_packet_options {
    int promiscuous;      ///< PACKET_ADD_MEMBERSHIP with PACKET_MR_PROMISC
    int ignore_outgoing;  ///< PACKET_IGNORE_OUTGOING
    int qdisc_bypass;     ///< PACKET_QDISC_BYPASS
    int vnet_header;      ///< PACKET_VNET_HDR (10-byte virtio_net_hdr before each frame)
    int rcvbuf;           ///< SO_RCVBUFFORCE bytes, 0 = default
    int sndbuf;           ///< SO_SNDBUFFORCE bytes, 0 = default
};

enum {
    CWARREN_PACKET_STEP_SOCKET = 1,
    CWARREN_PACKET_STEP_IFINDEX = 2,
    CWARREN_PACKET_STEP_VNET_HDR = 3,
    CWARREN_PACKET_STEP_IGNORE_OUTGOING = 4,
    CWARREN_PACKET_STEP_QDISC_BYPASS = 5,
    CWARREN_PACKET_STEP_RCVBUF = 6,
    CWARREN_PACKET_STEP_SNDBUF = 7,
    CWARREN_PACKET_STEP_BIND = 8,
    CWARREN_PACKET_STEP_PROMISC = 9,
};
const char *cwarren_packet_step_name(int step);

/// Opens a non-blocking, close-on-exec AF_PACKET/SOCK_RAW socket for all protocols,
/// bound to interface `ifname` of the calling thread's namespace, with `options`.
/// Returns the fd (and `*ifindex`) or -errno with `*failed_step`.
int cwarren_packet_open(const char *ifname, const struct cwarren_packet_options *options,
                        int *ifindex, int *failed_step);

/// sizeof(struct mmsghdr) — arrays passed as `msgvec` below hold `count` of these.
size_t cwarren_mmsghdr_size(void);

/// Fills `msgvec` (count mmsghdr) and `iovecs` for `count` slots of a contiguous buffer:
/// slot i's frame is at `frames + i * slot_size`. When `headers` is non-NULL, each message
/// has two iovecs (the `header_size` bytes at `headers + i * header_size`, then the frame),
/// so `iovecs` must hold 2 * count entries; otherwise one. Frame iovecs get `slot_size`.
void cwarren_mmsg_setup(void *msgvec, struct iovec *iovecs, unsigned count,
                        void *frames, size_t slot_size, void *headers, size_t header_size);

/// For sending: sets the frame iovec of message i to `lengths[i]` bytes (i < count).
void cwarren_mmsg_set_lengths(void *msgvec, unsigned count, const size_t *lengths);

/// After receiving `count` messages: stores each frame's length (bytes received minus the
/// header) clamped to `slot_size` in `lengths`, and returns how many were truncated
/// (the kernel reported more bytes than fit; needs MSG_TRUNC in the recv flags).
unsigned cwarren_mmsg_get_lengths(const void *msgvec, unsigned count, size_t header_size,
                                  size_t slot_size, size_t *lengths);

/// Resets the frame iovec of each of `count` messages to `slot_size` bytes (before RX).
void cwarren_mmsg_reset_lengths(void *msgvec, unsigned count, size_t slot_size);

// MARK: TPACKET_V2 receive ring
// A memory-mapped ring the kernel writes received frames into, one fixed-size slot per
// frame, each handed over by its own status word (V2: no block timer, so no added
// latency). Receiving is then a walk over the ring with no system call per batch.
// Set PACKET_VNET_HDR and PACKET_AUXDATA-equivalents before opening: the ring carries
// the virtio-net header just before each frame and the stripped 802.1Q tag in the slot
// header.

typedef struct cwarren_rx_ring {
    void *map;
    size_t map_size;
    unsigned frame_size;
    unsigned frame_count;
    unsigned frames_per_block;
    unsigned block_size;
    unsigned next;
} cwarren_rx_ring;

/// Switches `fd` to TPACKET_V2 and maps a receive ring with room for frames of
/// `max_frame` bytes (plus `header_size` bytes of vnet header) and about `min_frames`
/// slots. 0 or -errno; on failure the socket is left as it was when possible.
int cwarren_rx_ring_open(int fd, size_t max_frame, size_t header_size, unsigned min_frames, cwarren_rx_ring *ring);
/// Unmaps the ring (the socket itself is closed by its owner).
void cwarren_rx_ring_close(cwarren_rx_ring *ring);
/// Moves up to `capacity` frames from the ring into slots of `slot_size` at `frames`
/// (their lengths into `lengths`, their vnet headers — when `header_size` > 0 — into
/// `headers + i * header_size`), re-inserting stripped 802.1Q tags, and gives each ring
/// slot back to the kernel. Frames longer than a slot or cut by the ring are counted in
/// `*truncated` and skipped; tags without room in `*vlan_lost`. Returns the count.
unsigned cwarren_rx_ring_receive(cwarren_rx_ring *ring, unsigned capacity, void *frames, size_t slot_size,
                                 void *headers, size_t header_size, size_t *lengths,
                                 unsigned long *truncated, unsigned long *vlan_lost);

// MARK: VLAN tags on receive
// The kernel strips a received frame's 802.1Q tag into packet metadata; a packet socket
// sees it only through PACKET_AUXDATA control messages. These put the tag back.

/// setsockopt(PACKET_AUXDATA, 1). 0 or -errno.
int cwarren_packet_enable_auxdata(int fd);
/// Bytes of control buffer one message needs for its tpacket_auxdata.
size_t cwarren_auxdata_control_size(void);
/// Points message i's control buffer at `control + i * control_size` and resets its
/// length (call before every receive).
void cwarren_mmsg_reset_control(void *msgvec, unsigned count, void *control, size_t control_size);
/// After receiving `count` messages into slots of `slot_size` at `frames`: re-inserts
/// each stripped 802.1Q tag (TPID and TCI from the auxdata) after the MAC addresses,
/// growing `lengths[i]` by 4. Frames without room for the tag are left alone and
/// counted. Returns how many tags could not be restored.
unsigned cwarren_mmsg_restore_vlan(const void *msgvec, unsigned count, void *frames, size_t slot_size,
                                   size_t *lengths);

/// recvmmsg(fd, msgvec, vlen, flags, NULL): number received or -errno.
int cwarren_recvmmsg(int fd, void *msgvec, unsigned vlen, int flags);
/// sendmmsg(fd, msgvec, vlen, flags): number sent or -errno.
int cwarren_sendmmsg(int fd, void *msgvec, unsigned vlen, int flags);

/// MSG_DONTWAIT, MSG_TRUNC for the flags above.
int cwarren_msg_dontwait(void);
int cwarren_msg_trunc(void);

// MARK: processes

/// One bind mount for a spawned child's private mount namespace.
struct cwarren_bind_mount {
    const char *source;
    const char *target;
};

/// What to spawn. All memory is owned by the caller and must stay valid during the call.
struct cwarren_spawn_request {
    const char *path;                 ///< executable (absolute path; not searched in PATH)
    char *const *argv;                ///< NULL-terminated, argv[0] included
    char *const *envp;                ///< NULL-terminated
    int netns_fd;                     ///< fd of a network namespace to enter, or -1
    const struct cwarren_bind_mount *mounts; ///< non-empty → own mount namespace
    int mount_count;
    int stdin_fd;                     ///< fd for stdin (e.g. /dev/null); required
    int log_fd;                       ///< fd for stdout and stderr; required
    const char *working_directory;    ///< chdir target; required
};

enum {
    CWARREN_SPAWN_STEP_PIPE = 1,
    CWARREN_SPAWN_STEP_FORK = 2,
    CWARREN_SPAWN_STEP_SIGNALS = 3,
    CWARREN_SPAWN_STEP_SETSID = 4,
    CWARREN_SPAWN_STEP_SETNS = 5,
    CWARREN_SPAWN_STEP_UNSHARE_MOUNT = 6,
    CWARREN_SPAWN_STEP_MAKE_PRIVATE = 7,
    CWARREN_SPAWN_STEP_BIND_MOUNT = 8,
    CWARREN_SPAWN_STEP_CHDIR = 9,
    CWARREN_SPAWN_STEP_DUP2 = 10,
    CWARREN_SPAWN_STEP_CLOSE_FDS = 11,
    CWARREN_SPAWN_STEP_EXEC = 12,
    CWARREN_SPAWN_STEP_REPORT = 13,
};
const char *cwarren_spawn_step_name(int step);

/// Forks; the child performs only async-signal-safe system calls (signal reset, setsid,
/// setns, unshare(CLONE_NEWNS) + make / rprivate + bind mounts, chdir, dup2, close_range,
/// execve) and reports a failure to the parent through a close-on-exec pipe. Returns 0 with
/// `*pid` when the exec succeeded; -errno with `*failed_step` (and `*failed_mount` = index
/// of the failing bind mount, else -1) otherwise, in which case the child is reaped.
int cwarren_spawn(const struct cwarren_spawn_request *request, pid_t *pid,
                  int *failed_step, int *failed_mount);

/// pidfd_open(pid, 0): an fd that becomes readable when the process exits, or -errno.
int cwarren_pidfd_open(pid_t pid);
/// pidfd_send_signal(pidfd, sig, NULL, 0): 0 or -errno.
int cwarren_pidfd_send_signal(int pidfd, int sig);

/// waitpid(pid, WNOHANG). Returns pid when reaped (with `*kind` 1 = exited with `*code`,
/// 2 = killed by signal `*code`), 0 when still running, -errno on error (e.g. -ECHILD when
/// `pid` is not our child).
int cwarren_wait_nohang(pid_t pid, int *kind, int *code);

/// pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)): 0 or -errno.
int cwarren_pipe(int fds[2], int nonblocking);

/// flock(fd, LOCK_EX | LOCK_NB): 0 or -errno (-EWOULDBLOCK when held elsewhere).
int cwarren_flock_exclusive_nonblocking(int fd);
/// flock(fd, LOCK_UN): 0 or -errno.
int cwarren_flock_unlock(int fd);

/// setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes): 0 or -errno.
int cwarren_set_rcvbuf_force(int fd, int bytes);

// MARK: epoll and eventfd (missing from Swift's Glibc module)

/// One ready descriptor: the registered `data` and the EPOLL* `events` that occurred.
/// (Unpacked copy of struct epoll_event, which is packed on x86-64.)
struct cwarren_epoll_event {
    uint32_t events;
    uint64_t data;
};

enum {
    CWARREN_EPOLLIN = 0x001,
    CWARREN_EPOLLPRI = 0x002,
    CWARREN_EPOLLOUT = 0x004,
    CWARREN_EPOLLERR = 0x008,
    CWARREN_EPOLLHUP = 0x010,
    CWARREN_EPOLLRDHUP = 0x2000,
    CWARREN_EPOLLET = (int)(1u << 31),
};

/// epoll_create1(EPOLL_CLOEXEC): fd or -errno.
int cwarren_epoll_create(void);
/// epoll_ctl(ADD / MOD): 0 or -errno.
int cwarren_epoll_add(int epfd, int fd, uint32_t events, uint64_t data);
int cwarren_epoll_modify(int epfd, int fd, uint32_t events, uint64_t data);
/// epoll_ctl(DEL): 0 or -errno.
int cwarren_epoll_delete(int epfd, int fd);
/// epoll_wait into `events` (at most `max`, up to 256 per call): count, 0 on timeout, or -errno
/// (-EINTR included).
int cwarren_epoll_wait(int epfd, struct cwarren_epoll_event *events, int max, int timeout_ms);

/// eventfd(initial, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0)): fd or -errno.
int cwarren_eventfd(unsigned initial, int nonblocking);

// MARK: netlink

/// Enables NETLINK_EXT_ACK on a netlink socket so the kernel explains its errors. 0 or -errno.
int cwarren_netlink_enable_ext_ack(int fd);

/// Given the `struct nlmsgerr *` of a netlink error message (as passed to libnl's error
/// callback), returns the kernel's extended-ack text (NLMSGERR_ATTR_MSG), or NULL. The text
/// points into the message and is valid only during the callback.
const char *cwarren_nlmsgerr_message(const void *nlmsgerr);

/// The errno carried by a `struct nlmsgerr *` (positive).
int cwarren_nlmsgerr_errno(const void *nlmsgerr);

#ifdef __cplusplus
}
#endif
#endif
