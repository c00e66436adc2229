// ProcessSupervisor: starts, watches, restarts and adopts the daemons plugins run (charon,
// BIRD), each optionally inside a named network namespace and a private mount namespace.
//
// What: `start(spec)` spawns through the C shim (fork; in the child only async-signal-safe
// calls: signals reset, setsid, setns, unshare(CLONE_NEWNS) + rprivate + bind mounts, chdir,
// stdio redirection, close_range, execve; failures come back through a close-on-exec pipe
// naming the step). Exits are seen through pidfds polled by one watcher thread; our own
// children are reaped with waitpid. An unexpected exit is followed by a restart with
// exponential backoff (RestartPolicy). Each running process has a record
// `<stateDirectory>/<name>.json` (pid, start time, executable, image, spec hash): a new
// supervisor asked to start the same spec finds the live process (same pid, start time and
// image) and ADOPTS it instead of starting a second one; a survivor with a different spec
// hash is stopped and replaced.
// Invariants: one entry per name; `generation` increases on every start/stop so a stale
// exit or a restart timer never acts on a newer run; state files exist exactly while a
// process of ours is meant to be running (kept by `detachAll`, removed by stop/give-up).
// Secrets: arguments and environment are never logged or put into errors.
// Threading: an actor. The watcher thread only hops onto it (one Task per exit); fork and
// the exec handshake run briefly on the actor's executor.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

/// Supervises daemons (see file comment).
public actor ProcessSupervisor {
    /// Where the per-process records live.
    public nonisolated let stateDirectory: String
    /// Everything that happens to supervised processes; one consumer expected. Unconsumed
    /// events are kept up to 4096 (the oldest are dropped), so not listening is harmless.
    public nonisolated let events: AsyncStream<ProcessEvent>
    private let eventSink: AsyncStream<ProcessEvent>.Continuation
    private let log: @Sendable (String) -> Void

    private final class Entry {
        var spec: ProcessSpec
        var specHash: String
        var pid: Int32 = 0
        var pidfd: Int32 = -1
        var token: UInt64 = 0
        var isChild = true
        var adopted = false
        var running = false
        var startedAt: Double = 0
        var restarts = 0
        var quickFailures = 0
        var lastExit: ExitStatus?
        var generation = 0
        var stopping = false
        var restartTask: Task<Void, Never>?
        init(spec: ProcessSpec) {
            self.spec = spec
            specHash = spec.specHash
        }
    }

    private var entries: [String: Entry] = [:]
    private var watcher: ExitWatcher?
    private var nextToken: UInt64 = 1
    private var nextWaiter = 1
    /// Callers of waitForExit: id → (token of the run they wait for, continuation).
    private var waiters: [Int: (token: UInt64, continuation: CheckedContinuation<Bool, Never>)] = [:]

    /// Creates a supervisor keeping records in `stateDirectory` (created on first start) and
    /// reporting what it does, one line at a time, to `log`.
    public init(stateDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.stateDirectory = stateDirectory
        self.log = log
        (events, eventSink) = AsyncStream.makeStream(of: ProcessEvent.self, bufferingPolicy: .bufferingNewest(4096))
    }

    deinit {
        watcher?.stop()
        eventSink.finish()
    }

    // MARK: public API

    /// Starts `spec` (or adopts its survivor from an earlier supervisor) and returns the pid.
    /// Starting a name that is already running with the same spec returns its pid; with a
    /// different spec it throws (stop it first).
    public func start(_ spec: ProcessSpec) async throws -> Int32 {
        try spec.validate()
        if let e = entries[spec.name], e.stopping, e.running {
            // A stop is in progress: let it finish, then start afresh.
            _ = await waitForExit(e, timeout: 20)
        }
        if let e = entries[spec.name], !e.stopping, e.running || e.restartTask != nil {
            if e.specHash == spec.specHash { return e.pid }
            throw ProcessSupervisorError("\(spec.name) is already running (pid \(e.pid)) with a different spec; stop it first")
        }
        try makeStateDirectory()
        let entry = Entry(spec: spec)
        if let old = entries[spec.name] { entry.restarts = old.restarts }
        entries[spec.name] = entry
        do {
            if try await adoptSurvivor(entry) { return entry.pid }
            try launch(entry)
            return entry.pid
        } catch {
            if entries[spec.name] === entry { entries[spec.name] = nil }
            throw error
        }
    }

    /// Stops `name`: SIGTERM, then SIGKILL if it is still running after `timeout` seconds.
    /// No restart follows. Stopping an unknown or already stopped name does nothing.
    public func stop(name: String, timeout: Double = 10) async {
        guard let e = entries[name] else { return }
        e.stopping = true
        e.generation += 1
        e.restartTask?.cancel()
        e.restartTask = nil
        guard e.running else {
            removeRecord(name)
            return
        }
        signal(e, SIGTERM)
        if await waitForExit(e, timeout: timeout) { return }
        log("\(name) (pid \(e.pid)) did not stop within \(timeout) s; sending SIGKILL")
        signal(e, SIGKILL)
        if !(await waitForExit(e, timeout: 5)) {
            log("\(name) (pid \(e.pid)) still running 5 s after SIGKILL")
        }
    }

    /// Stops every supervised process (concurrently), each with `timeout`.
    public func stopAll(timeout: Double = 10) async {
        let names = Array(entries.keys)
        await withTaskGroup(of: Void.self) { group in
            for name in names { group.addTask { await self.stop(name: name, timeout: timeout) } }
        }
    }

    /// Forgets all processes but leaves them running, with their records, so that the next
    /// agent adopts them (used on agent shutdown so tunnels survive a restart).
    public func detachAll() {
        for (name, e) in entries {
            e.generation += 1
            e.restartTask?.cancel()
            e.restartTask = nil
            if e.pidfd >= 0 {
                watcher?.unwatch(token: e.token)
                close(e.pidfd)
                e.pidfd = -1
            }
            if e.running { log("detached \(name) (pid \(e.pid)); it keeps running") }
        }
        entries = [:]
        for (_, w) in waiters { w.continuation.resume(returning: false) }
        waiters = [:]
    }

    /// The status of `name`, or nil if it was never started (or was detached).
    public func status(name: String) -> ProcessStatus? {
        guard let e = entries[name] else { return nil }
        return ProcessStatus(pid: e.pid, running: e.running, restarts: e.restarts, lastExit: e.lastExit,
                             startedAt: e.startedAt, adopted: e.adopted, restartPending: e.restartTask != nil)
    }

    /// The status of every known process, by name.
    public func statuses() -> [String: ProcessStatus] {
        var all: [String: ProcessStatus] = [:]
        for name in entries.keys { all[name] = status(name: name) }
        return all
    }

    // MARK: spawning

    private func launch(_ e: Entry) throws {
        let spec = e.spec
        let place = spec.namespace.map { " in \($0)" } ?? ""
        func fail(_ what: String, _ code: Int32) -> ProcessSupervisorError {
            ProcessSupervisorError("starting \(spec.name)\(place): \(what): \(errorText(code))")
        }
        var netns: Int32 = -1
        if let ns = spec.namespace {
            netns = open(try NetworkNamespace.path(of: ns), O_RDONLY | O_CLOEXEC)
            if netns < 0 { throw fail("opening network namespace \(ns)", errno) }
        }
        defer { if netns >= 0 { close(netns) } }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        if devnull < 0 { throw fail("opening /dev/null", errno) }
        defer { close(devnull) }
        var logfd = devnull
        if let path = spec.logFile {
            logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            if logfd < 0 { throw fail("opening log file \(path)", errno) }
        }
        defer { if logfd != devnull { close(logfd) } }

        let argv = CStringArray([spec.executable] + spec.arguments)
        let envp = CStringArray(spec.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        let sources = CStringArray(spec.privateMounts.map(\.source))
        let targets = CStringArray(spec.privateMounts.map(\.target))
        var mounts = (0..<spec.privateMounts.count).map {
            cwarren_bind_mount(source: sources.pointers[$0], target: targets.pointers[$0])
        }
        var pid: pid_t = 0, step: Int32 = 0, mountIndex: Int32 = -1
        let rc: Int32 = spec.executable.withCString { path in
            (spec.workingDirectory ?? "/").withCString { cwd in
                mounts.withUnsafeMutableBufferPointer { m in
                    var request = cwarren_spawn_request(
                        path: path, argv: argv.pointers.baseAddress, envp: envp.pointers.baseAddress,
                        netns_fd: netns, mounts: m.baseAddress, mount_count: Int32(m.count),
                        stdin_fd: devnull, log_fd: logfd, working_directory: cwd)
                    return cwarren_spawn(&request, &pid, &step, &mountIndex)
                }
            }
        }
        if rc < 0 {
            var what = String(cString: cwarren_spawn_step_name(step))
            if step == CWARREN_SPAWN_STEP_EXEC { what += " \(spec.executable)" }
            if step == CWARREN_SPAWN_STEP_SETNS, let ns = spec.namespace { what += " \(ns)" }
            if step == CWARREN_SPAWN_STEP_CHDIR { what += " to \(spec.workingDirectory ?? "/")" }
            if mountIndex >= 0 && Int(mountIndex) < spec.privateMounts.count {
                let m = spec.privateMounts[Int(mountIndex)]
                what += " \(m.source) on \(m.target)"
            }
            throw fail(what, -rc)
        }
        let pidfd = cwarren_pidfd_open(pid)
        if pidfd < 0 {
            kill(pid, SIGKILL)
            var kind: Int32 = 0, code: Int32 = 0
            _ = cwarren_wait_nohang(pid, &kind, &code)
            throw fail("pidfd_open", -pidfd)
        }
        try track(e, pid: pid, pidfd: pidfd, isChild: true, adopted: false)
        writeRecord(e)
        log("started \(spec.name)\(place) (pid \(pid))")
        eventSink.yield(.started(name: spec.name, pid: pid))
    }

    private func track(_ e: Entry, pid: Int32, pidfd: Int32, isChild: Bool, adopted: Bool) throws {
        if watcher == nil {
            watcher = try ExitWatcher { [weak self] token in
                guard let self else { return }
                Task { await self.processExited(token: token) }
            }
        }
        e.pid = pid
        e.pidfd = pidfd
        e.isChild = isChild
        e.adopted = adopted
        e.running = true
        e.stopping = false
        e.startedAt = Self.now()
        e.token = nextToken
        nextToken += 1
        e.generation += 1
        try watcher!.watch(token: e.token, pidfd: pidfd)
    }

    // MARK: adoption

    /// Adopts the process recorded for `e.spec.name` if it is still the same process.
    private func adoptSurvivor(_ e: Entry) async throws -> Bool {
        let name = e.spec.name
        guard let record = readRecord(name) else { return false }
        guard record.name == name, record.executable == e.spec.executable,
              let live = ProcessInspection.stat(record.pid), live.state != "Z", live.startTime == record.startTime,
              ProcessInspection.image(record.pid) == record.image else {
            removeRecord(name) // stale: the process is gone (or the pid now belongs to another)
            return false
        }
        let pidfd = cwarren_pidfd_open(record.pid)
        // Re-check after opening: the pidfd must refer to the recorded process, not a reuse.
        guard pidfd >= 0, ProcessInspection.stat(record.pid)?.startTime == record.startTime else {
            if pidfd >= 0 { close(pidfd) }
            removeRecord(name)
            return false
        }
        if record.specHash != e.specHash {
            log("\(name) (pid \(record.pid)) was started with a different spec; replacing it")
            await terminate(pid: record.pid, pidfd: pidfd, timeout: 5)
            close(pidfd)
            removeRecord(name)
            return false
        }
        try track(e, pid: record.pid, pidfd: pidfd, isChild: false, adopted: true)
        e.startedAt = record.startedAt
        log("adopted \(name) (pid \(record.pid)) left running by an earlier supervisor")
        eventSink.yield(.adopted(name: name, pid: record.pid))
        return true
    }

    /// SIGTERM, wait, SIGKILL for a process we do not track (a replaced survivor).
    private func terminate(pid: Int32, pidfd: Int32, timeout: Double) async {
        _ = cwarren_pidfd_send_signal(pidfd, SIGTERM)
        let deadline = Self.now() + timeout
        while Self.now() < deadline {
            var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0 { break }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 0) == 0 {
            _ = cwarren_pidfd_send_signal(pidfd, SIGKILL)
            while poll(&p, 1, 0) == 0 { try? await Task.sleep(nanoseconds: 10_000_000) }
        }
        var kind: Int32 = 0, code: Int32 = 0
        _ = cwarren_wait_nohang(pid, &kind, &code) // reap if it happens to be our child
    }

    // MARK: exits and restarts

    private func processExited(token: UInt64) async {
        guard let (name, e) = entries.first(where: { $0.value.token == token && $0.value.running }) else { return }
        var status = ExitStatus.unknown
        var kind: Int32 = 0, code: Int32 = 0
        // The pidfd is readable once the process is a zombie; reaping may still race briefly.
        for _ in 0..<100 {
            let r = cwarren_wait_nohang(e.pid, &kind, &code)
            if r > 0 {
                status = kind == 1 ? .exited(code) : kind == 2 ? .signaled(code) : .unknown
                break
            }
            if r < 0 { break } // ECHILD: not our child (adopted from another agent process)
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
        if e.pidfd >= 0 { close(e.pidfd) }
        e.pidfd = -1
        e.running = false
        e.lastExit = status
        let expected = e.stopping
        log("\(name) (pid \(e.pid)) exited: \(status)\(expected ? "" : " (unexpected)")")
        eventSink.yield(.exited(name: name, pid: e.pid, status: status, expected: expected))
        for (id, w) in waiters where w.token == token {
            waiters[id] = nil
            w.continuation.resume(returning: true)
        }
        if expected || !e.spec.restart.enabled {
            removeRecord(name)
            return
        }
        scheduleRestart(name, e, ranFor: Self.now() - e.startedAt)
    }

    private func scheduleRestart(_ name: String, _ e: Entry, ranFor: Double) {
        let policy = e.spec.restart
        if ranFor >= policy.resetAfter { e.quickFailures = 0 }
        if let limit = policy.maxRestarts, e.restarts >= limit {
            removeRecord(name)
            let reason = "restart limit of \(limit) reached"
            log("giving up on \(name): \(reason)")
            eventSink.yield(.gaveUp(name: name, restarts: e.restarts, reason: reason))
            return
        }
        let delay = policy.delay(afterFailures: e.quickFailures)
        e.quickFailures += 1
        let attempt = e.restarts + 1
        let generation = e.generation
        log("restarting \(name) in \(delay) s (restart \(attempt))")
        eventSink.yield(.restarting(name: name, attempt: attempt, delay: delay))
        e.restartTask = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            await self?.restart(name, generation: generation)
        }
    }

    private func restart(_ name: String, generation: Int) {
        guard let e = entries[name], e.generation == generation, !e.stopping, !Task.isCancelled else { return }
        e.restartTask = nil
        e.restarts += 1
        do {
            try launch(e)
        } catch {
            log("restart of \(name) failed: \(error)")
            e.generation += 1
            scheduleRestart(name, e, ranFor: 0)
        }
    }

    private func signal(_ e: Entry, _ sig: Int32) {
        if e.pidfd >= 0 { _ = cwarren_pidfd_send_signal(e.pidfd, sig) }
    }

    /// Waits until `e` exits (true) or `timeout` seconds pass (false).
    private func waitForExit(_ e: Entry, timeout: Double) async -> Bool {
        if !e.running { return true }
        let id = nextWaiter
        nextWaiter += 1
        let token = e.token
        return await withCheckedContinuation { continuation in
            waiters[id] = (token, continuation)
            Task { [weak self] in
                try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                await self?.expireWaiter(id)
            }
        }
    }

    private func expireWaiter(_ id: Int) {
        waiters.removeValue(forKey: id)?.continuation.resume(returning: false)
    }

    // MARK: records

    private func recordPath(_ name: String) -> String { stateDirectory + "/" + name + ".json" }

    private func makeStateDirectory() throws {
        var path = ""
        for part in stateDirectory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw ProcessSupervisorError("creating state directory \(stateDirectory): \(errorText(errno))")
            }
        }
    }

    private func writeRecord(_ e: Entry) {
        guard let stat = ProcessInspection.stat(e.pid) else { return }
        let record = ProcessRecord(name: e.spec.name, pid: e.pid, startTime: stat.startTime, executable: e.spec.executable,
                                   image: ProcessInspection.image(e.pid) ?? "", specHash: e.specHash, startedAt: e.startedAt)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? encoder.encode(record) else { return }
        let path = recordPath(e.spec.name), temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            log("cannot write \(path): \(errorText(errno)); \(e.spec.name) will not be adopted after a restart")
            return
        }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written != data.count || rename(temporary, path) != 0 {
            log("cannot write \(path); \(e.spec.name) will not be adopted after a restart")
            unlink(temporary)
        }
    }

    private func readRecord(_ name: String) -> ProcessRecord? {
        guard let text = ProcessInspection.readSmallFile(recordPath(name)) else { return nil }
        return try? JSONDecoder().decode(ProcessRecord.self, from: Data(text.utf8))
    }

    private func removeRecord(_ name: String) { unlink(recordPath(name)) }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A NULL-terminated array of C strings that lives as long as the value.
private final class CStringArray {
    let pointers: UnsafeMutableBufferPointer<UnsafeMutablePointer<CChar>?>
    init(_ strings: [String]) {
        pointers = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() { pointers[i] = strdup(s) }
        pointers[strings.count] = nil
    }
    deinit {
        for p in pointers { free(p) }
        pointers.deallocate()
    }
}
