// Named network namespaces, compatible with iproute2 (`ip netns`), and a safe way to run
// code inside one.
//
// What: `create` bind-mounts a fresh network namespace at /run/netns/NAME exactly as
// `ip netns add` does (making /run/netns a shared mount point first), so `ip netns exec`
// works on it and vice versa; `delete` unmounts and unlinks it. `run(in:)` executes a short
// synchronous block inside a namespace.
//
// Invariants: setns() is per thread and new threads inherit their creator's namespace, so
// a thread that has been moved into a namespace must never run anything but the block it
// was made for (LINUX-NOTES.md, "the trap"). `run(in:)` therefore uses a dedicated,
// short-lived pthread that enters the namespace, runs the block, switches back (aborting
// the process if that fails) and exits. No Swift concurrency worker ever changes namespace.
// Threading: all functions are thread-safe and synchronous; `run` blocks the caller for the
// duration of the block.

#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

/// Named network namespaces under /run/netns (the iproute2 convention).
public enum NetworkNamespace {
    /// Where named namespaces are bind-mounted.
    public static let directory = "/run/netns"

    /// Validates a namespace name and returns its path, /run/netns/NAME.
    public static func path(of name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..",
              !name.contains("/"), !name.contains("\0") else {
            throw ArgumentError(argument: "namespace", value: name,
                                reason: "must be 1–255 characters without \"/\" and not \".\" or \"..\"")
        }
        return directory + "/" + name
    }

    /// Creates the named network namespace (like `ip netns add NAME`).
    /// Throws `SystemCallError` naming the step that failed, e.g. "File exists" if it exists.
    public static func create(_ name: String) throws {
        let path = try path(of: name)
        var step: Int32 = 0
        let rc = cwarren_netns_create(directory, path, &step)
        if rc != 0 {
            let what = String(cString: cwarren_netns_step_name(step))
            throw SystemCallError("creating network namespace \(name) (\(what))", errno: -rc)
        }
    }

    /// Deletes the named network namespace (like `ip netns delete NAME`): the namespace
    /// itself goes away once no process, socket or interface keeps it alive.
    /// Deleting a namespace that does not exist throws (ENOENT).
    public static func delete(_ name: String) throws {
        let path = try path(of: name)
        guard exists(name) else {
            throw SystemCallError("deleting network namespace \(name)", errno: ENOENT)
        }
        var step: Int32 = 0
        let rc = cwarren_netns_delete(path, &step)
        if rc != 0 {
            let what = String(cString: cwarren_netns_step_name(step))
            throw SystemCallError("deleting network namespace \(name) (\(what))", errno: -rc)
        }
    }

    /// The names of all namespaces in /run/netns, sorted.
    public static func list() -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Whether /run/netns/NAME exists.
    public static func exists(_ name: String) -> Bool {
        guard let path = try? path(of: name) else { return false }
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Runs `body` inside the named namespace on a dedicated, short-lived thread and returns
    /// its result; the calling thread waits.
    ///
    /// `body` must be short and synchronous: create file descriptors (sockets, /dev/net/tun),
    /// read or write /proc/sys, resolve interface names. It must not await, start tasks or
    /// threads (they would inherit the namespace), or block for long. File descriptors made
    /// inside stay bound to the namespace and may be used from any thread afterwards.
    /// If switching the thread back fails the process aborts.
    public static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        let path = try path(of: name)
        let target = open(path, O_RDONLY | O_CLOEXEC)
        if target < 0 { throw SystemCallError("opening network namespace \(name)", errno: errno) }
        defer { close(target) }
        return try DedicatedThread.run("entering network namespace \(name)") {
            let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            if home < 0 { throw SystemCallError("opening the current network namespace", errno: errno) }
            defer { close(home) }
            let rc = cwarren_setns_net(target)
            if rc != 0 { throw SystemCallError("entering network namespace \(name)", errno: -rc) }
            defer {
                if cwarren_setns_net(home) != 0 {
                    // Never let a thread run on in a namespace it was not meant to be in.
                    fatalError("WarrenLinux: cannot switch a thread back out of network namespace \(name)")
                }
            }
            return try body()
        }
    }

    /// Runs `body` in the named namespace, or directly on the calling thread when `name` is nil.
    static func run<T>(inOptional name: String?, _ body: () throws -> T) throws -> T {
        if let name { return try run(in: name, body) }
        return try body()
    }

    /// Writes a sysctl, e.g. `setSysctl("net.ipv4.ip_forward", "1", namespace: "wlt-a")`.
    /// `namespace` nil means the caller's own namespace.
    public static func setSysctl(_ key: String, _ value: String, namespace: String?) throws {
        let path = try sysctlPath(key)
        let place = namespace.map { " in \($0)" } ?? ""
        try run(inOptional: namespace) {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 { throw SystemCallError("setting sysctl \(key)=\(value)\(place)", errno: errno) }
            defer { close(fd) }
            let bytes = Array(value.utf8)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw SystemCallError("setting sysctl \(key)=\(value)\(place)", errno: errno) }
        }
    }

    /// Reads a sysctl (trailing newline removed). `namespace` nil means the caller's own.
    public static func sysctl(_ key: String, namespace: String?) throws -> String {
        let path = try sysctlPath(key)
        let place = namespace.map { " in \($0)" } ?? ""
        return try run(inOptional: namespace) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw SystemCallError("reading sysctl \(key)\(place)", errno: errno) }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw SystemCallError("reading sysctl \(key)\(place)", errno: errno) }
            var text = String(decoding: buffer[0..<n], as: UTF8.self)
            while text.hasSuffix("\n") { text.removeLast() }
            return text
        }
    }

    /// The inode of the calling thread's network namespace (`/proc/thread-self/ns/net`),
    /// which identifies the namespace; equal values mean the same namespace.
    public static func currentThreadNamespaceID() -> UInt64? {
        var st = stat()
        guard stat("/proc/thread-self/ns/net", &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }

    /// The namespace inode of the named namespace (see `currentThreadNamespaceID`).
    public static func namespaceID(of name: String) throws -> UInt64 {
        let path = try path(of: name)
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemCallError("inspecting network namespace \(name)", errno: errno) }
        return UInt64(st.st_ino)
    }

    static func sysctlPath(_ key: String) throws -> String {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.allSatisfy({ !$0.isEmpty && !$0.contains("/") }) else {
            throw ArgumentError(argument: "key", value: key, reason: "expected a dotted sysctl name like net.ipv4.ip_forward")
        }
        return "/proc/sys/" + parts.joined(separator: "/")
    }
}
