// Tests for ProcessSupervisor with small real programs: start/stop, log capture and
// environment, SIGKILL escalation, backoff and giving up, a process in a network namespace
// (wlt-ps*), a private /run bind mount, adoption by a second supervisor, restart after
// kill -9, and spawn failures that name the failing step. Every test stops what it started.

import Foundation
import XCTest
@testable import WarrenLinux

/// Collects supervisor events and log lines.
final class SupervisorRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var eventList: [ProcessEvent] = []
    private var lines: [String] = []
    var events: [ProcessEvent] { lock.lock(); defer { lock.unlock() }; return eventList }
    var logLines: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    func add(_ e: ProcessEvent) { lock.lock(); eventList.append(e); lock.unlock() }
    func log(_ l: String) { lock.lock(); lines.append(l); lock.unlock() }
    func follow(_ s: ProcessSupervisor) -> Task<Void, Never> {
        Task.detached { [self] in for await e in s.events { add(e) } }
    }
}

final class ProcessSupervisorTests: XCTestCase {
    private var dir = ""
    private var supervisors: [ProcessSupervisor] = []
    private var followers: [Task<Void, Never>] = []
    private let scratch = ScratchNamespaces()
    private var extraPIDs: [Int32] = []

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "wlt-sup-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        for s in supervisors { await s.stopAll(timeout: 1) }
        for pid in extraPIDs where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        for f in followers { f.cancel() }
        supervisors = []
        scratch.removeAll()
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func supervisor(_ recorder: SupervisorRecorder) -> ProcessSupervisor {
        let s = ProcessSupervisor(stateDirectory: dir + "/state") { recorder.log($0) }
        supervisors.append(s)
        followers.append(recorder.follow(s))
        return s
    }

    private func alive(_ pid: Int32) -> Bool {
        guard let st = ProcessInspection.stat(pid) else { return false }
        return st.state != "Z"
    }

    private func eventually(_ timeout: Double = 5, _ condition: @escaping () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await condition() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return await condition()
    }

    private var recordExists: (String) -> Bool {
        { [dir] name in FileManager.default.fileExists(atPath: dir + "/state/\(name).json") }
    }

    func testStartStatusAndStop() async throws {
        let rec = SupervisorRecorder()
        let s = supervisor(rec)
        let spec = ProcessSpec(name: "wlt-sleep", executable: "/bin/sleep", arguments: ["30"])
        let pid = try await s.start(spec)
        XCTAssertTrue(alive(pid))
        let v1 = try await s.start(spec)
        XCTAssertEqual(v1, pid, "starting the same spec again returns the running pid")
        var other = spec
        other.arguments = ["31"]
        do { _ = try await s.start(other); XCTFail("a different spec under a running name must fail") } catch {
            XCTAssertTrue("\(error)".contains("already running"), "\(error)")
        }
        let v2 = await s.status(name: "wlt-sleep")
        let status = try XCTUnwrap(v2)
        XCTAssertTrue(status.running)
        XCTAssertEqual(status.pid, pid)
        XCTAssertEqual(status.restarts, 0)
        XCTAssertTrue(recordExists("wlt-sleep"))
        // setsid: the child leads its own session.
        XCTAssertEqual(getsid(pid), pid)

        await s.stop(name: "wlt-sleep", timeout: 2)
        XCTAssertFalse(alive(pid))
        let v3 = await s.status(name: "wlt-sleep")
        let after = try XCTUnwrap(v3)
        XCTAssertFalse(after.running)
        XCTAssertEqual(after.lastExit, .signaled(SIGTERM))
        XCTAssertFalse(recordExists("wlt-sleep"))
        let ok = await eventually { rec.events.contains(.exited(name: "wlt-sleep", pid: pid, status: .signaled(SIGTERM), expected: true)) }
        XCTAssertTrue(ok, "\(rec.events)")
        XCTAssertEqual(rec.events.first, .started(name: "wlt-sleep", pid: pid))
        XCTAssertFalse(rec.events.contains { if case .restarting = $0 { true } else { false } })
        let v4 = await s.status(name: "never-started")
        XCTAssertNil(v4)
    }

    func testOutputEnvironmentAndWorkingDirectoryGoToTheLog() async throws {
        let rec = SupervisorRecorder()
        let s = supervisor(rec)
        let logPath = dir + "/out.log"
        try "earlier line\n".write(toFile: logPath, atomically: true, encoding: .utf8)
        let script = "echo out $WARREN_TEST; echo err >&2; pwd; ls /proc/self/fd | wc -l; read x && echo stdin-had-data; exit 3"
        let spec = ProcessSpec(name: "wlt-script", executable: "/bin/sh", arguments: ["-c", script],
                               environment: ["WARREN_TEST": "hello", "PATH": "/usr/bin:/bin"], logFile: logPath,
                               workingDirectory: "/tmp", restart: .never)
        let pid = try await s.start(spec)
        let exited = await eventually { await s.status(name: "wlt-script")?.running == false }
        XCTAssertTrue(exited)
        let v5 = await s.status(name: "wlt-script")
        XCTAssertEqual(v5?.lastExit, .exited(3))
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        let lines = log.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "earlier line", "the log is appended to")
        XCTAssertTrue(lines.contains("out hello"), log)
        XCTAssertTrue(lines.contains("err"), log)
        XCTAssertTrue(lines.contains("/tmp"), log)
        // Only 0, 1, 2 and ls's own directory fd are open: nothing leaked from the agent.
        XCTAssertTrue(lines.contains("4"), log)
        XCTAssertFalse(lines.contains("stdin-had-data"), "stdin is /dev/null")
        let sawExit = await eventually { rec.events.contains(.exited(name: "wlt-script", pid: pid, status: .exited(3), expected: false)) }
        XCTAssertTrue(sawExit)
        XCTAssertFalse(recordExists("wlt-script"), "restart .never: no record left")
        XCTAssertFalse(rec.logLines.joined().contains("hello"), "environment values are never logged")
    }

    func testStartDuringStopWaitsAndStartsAfresh() async throws {
        let s = supervisor(SupervisorRecorder())
        let spec = ProcessSpec(name: "wlt-slowstop", executable: "/bin/sh",
                               arguments: ["-c", "trap 'sleep 0.2; exit 0' TERM; while :; do sleep 0.05; done"])
        let pid = try await s.start(spec)
        try await Task.sleep(nanoseconds: 100_000_000)
        async let stopping: Void = s.stop(name: "wlt-slowstop", timeout: 5)
        try await Task.sleep(nanoseconds: 20_000_000)
        let newPID = try await s.start(spec)
        await stopping
        XCTAssertNotEqual(newPID, pid)
        XCTAssertFalse(alive(pid))
        let status = await s.status(name: "wlt-slowstop")
        XCTAssertEqual(status?.running, true)
        XCTAssertEqual(status?.pid, newPID)
    }

    func testStopEscalatesToSigkill() async throws {
        let s = supervisor(SupervisorRecorder())
        let spec = ProcessSpec(name: "wlt-stubborn", executable: "/bin/sh",
                               arguments: ["-c", "trap '' TERM; while :; do sleep 0.05; done"])
        let pid = try await s.start(spec)
        try await Task.sleep(nanoseconds: 100_000_000) // let the shell install its trap
        let started = Date()
        await s.stop(name: "wlt-stubborn", timeout: 0.3)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.3)
        XCTAssertFalse(alive(pid))
        let v6 = await s.status(name: "wlt-stubborn")
        XCTAssertEqual(v6?.lastExit, .signaled(SIGKILL))
    }

    func testImmediateExitBacksOffExponentiallyAndGivesUp() async throws {
        let rec = SupervisorRecorder()
        let s = supervisor(rec)
        let policy = RestartPolicy(minBackoff: 0.05, maxBackoff: 0.15, resetAfter: 60, maxRestarts: 4)
        _ = try await s.start(ProcessSpec(name: "wlt-false", executable: "/bin/false", restart: policy))
        let gaveUp = await eventually { rec.events.contains { if case .gaveUp = $0 { true } else { false } } }
        XCTAssertTrue(gaveUp, "\(rec.events)")
        let delays = rec.events.compactMap { if case .restarting(_, _, let d) = $0 { d } else { nil } }
        XCTAssertEqual(delays, [0.05, 0.1, 0.15, 0.15])
        let attempts = rec.events.compactMap { if case .restarting(_, let a, _) = $0 { a } else { nil } }
        XCTAssertEqual(attempts, [1, 2, 3, 4])
        XCTAssertEqual(rec.events.filter { if case .started = $0 { true } else { false } }.count, 5)
        XCTAssertEqual(rec.events.last, .gaveUp(name: "wlt-false", restarts: 4, reason: "restart limit of 4 reached"))
        let v7 = await s.status(name: "wlt-false")
        let status = try XCTUnwrap(v7)
        XCTAssertEqual(status.restarts, 4)
        XCTAssertEqual(status.lastExit, .exited(1))
        XCTAssertFalse(status.running)
        XCTAssertFalse(status.restartPending)
        XCTAssertEqual(RestartPolicy().delay(afterFailures: 0), 0.5)
        XCTAssertEqual(RestartPolicy().delay(afterFailures: 10), 30)
    }

    func testKill9OfAChildRestartsIt() async throws {
        let rec = SupervisorRecorder()
        let s = supervisor(rec)
        let spec = ProcessSpec(name: "wlt-victim", executable: "/bin/sleep", arguments: ["30"],
                               restart: RestartPolicy(minBackoff: 0.05))
        let pid = try await s.start(spec)
        kill(pid, SIGKILL)
        let restarted = await eventually { (await s.status(name: "wlt-victim")).map { $0.running && $0.pid != pid } ?? false }
        XCTAssertTrue(restarted)
        let v8 = await s.status(name: "wlt-victim")
        let status = try XCTUnwrap(v8)
        XCTAssertEqual(status.restarts, 1)
        XCTAssertEqual(status.lastExit, .signaled(SIGKILL))
        XCTAssertTrue(alive(status.pid))
        XCTAssertTrue(rec.events.contains(.exited(name: "wlt-victim", pid: pid, status: .signaled(SIGKILL), expected: false)))
        XCTAssertTrue(rec.events.contains(.restarting(name: "wlt-victim", attempt: 1, delay: 0.05)))
        XCTAssertTrue(rec.events.contains(.started(name: "wlt-victim", pid: status.pid)))
        // The record follows the new pid.
        let record = try JSONDecoder().decode(ProcessRecord.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/state/wlt-victim.json")))
        XCTAssertEqual(record.pid, status.pid)
        // Stopping during a pending restart cancels it.
        kill(status.pid, SIGKILL)
        try await Task.sleep(nanoseconds: 20_000_000)
        await s.stop(name: "wlt-victim", timeout: 1)
        try await Task.sleep(nanoseconds: 300_000_000)
        let v9 = await s.status(name: "wlt-victim")
        XCTAssertEqual(v9?.running, false)
        XCTAssertFalse(recordExists("wlt-victim"))
    }

    func testProcessRunsInTheNetworkNamespace() async throws {
        let ns = try scratch.make("ps1")
        let s = supervisor(SupervisorRecorder())
        let pid = try await s.start(ProcessSpec(name: "wlt-nsproc", executable: "/bin/sleep", arguments: ["30"], namespace: ns))
        var st = stat()
        XCTAssertEqual(stat("/proc/\(pid)/ns/net", &st), 0)
        XCTAssertEqual(UInt64(st.st_ino), try NetworkNamespace.namespaceID(of: ns))
        XCTAssertNotEqual(UInt64(st.st_ino), NetworkNamespace.currentThreadNamespaceID())
        await s.stop(name: "wlt-nsproc", timeout: 2)
    }

    func testPrivateRunBindMount() async throws {
        let s = supervisor(SupervisorRecorder())
        let runDir = dir + "/run"
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        try "private-marker\n".write(toFile: runDir + "/wlt-marker", atomically: true, encoding: .utf8)
        let logPath = dir + "/mnt.log"
        let spec = ProcessSpec(name: "wlt-mnt", executable: "/bin/sh",
                               arguments: ["-c", "cat /run/wlt-marker; echo child-wrote > /run/wlt-child; exec sleep 30"],
                               privateMounts: [BindMount(source: runDir, target: "/run")], logFile: logPath)
        let pid = try await s.start(spec)
        let wrote = await eventually { FileManager.default.fileExists(atPath: runDir + "/wlt-child") }
        XCTAssertTrue(wrote, "the child's /run is the source directory")
        XCTAssertEqual(try String(contentsOfFile: logPath, encoding: .utf8), "private-marker\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/wlt-marker"), "host /run unchanged")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/wlt-child"), "host /run unchanged")
        var own = stat(), child = stat()
        stat("/proc/self/ns/mnt", &own)
        stat("/proc/\(pid)/ns/mnt", &child)
        XCTAssertNotEqual(own.st_ino, child.st_ino, "the child has its own mount namespace")
        await s.stop(name: "wlt-mnt", timeout: 2)
    }

    func testSecondSupervisorAdoptsThenRestartsAfterKill() async throws {
        let rec1 = SupervisorRecorder(), rec2 = SupervisorRecorder()
        let first = supervisor(rec1)
        let spec = ProcessSpec(name: "wlt-daemon", executable: "/bin/sleep", arguments: ["30"],
                               restart: RestartPolicy(minBackoff: 0.05))
        let pid = try await first.start(spec)
        extraPIDs.append(pid)
        await first.detachAll()
        let v10 = await first.status(name: "wlt-daemon")
        XCTAssertNil(v10)
        XCTAssertTrue(alive(pid), "detachAll leaves processes running")
        XCTAssertTrue(recordExists("wlt-daemon"))

        let second = supervisor(rec2)
        let v11 = try await second.start(spec)
        XCTAssertEqual(v11, pid, "adopted, not started twice")
        let v12 = await second.status(name: "wlt-daemon")
        let status = try XCTUnwrap(v12)
        XCTAssertTrue(status.adopted && status.running)
        let adopted = await eventually { rec2.events.first == .adopted(name: "wlt-daemon", pid: pid) }
        XCTAssertTrue(adopted, "\(rec2.events)")
        XCTAssertFalse(rec2.events.contains { if case .started = $0 { true } else { false } })

        kill(pid, SIGKILL)
        let restarted = await eventually { (await second.status(name: "wlt-daemon")).map { $0.running && $0.pid != pid } ?? false }
        XCTAssertTrue(restarted)
        let v13 = await second.status(name: "wlt-daemon")
        let newPID = try XCTUnwrap(v13?.pid)
        extraPIDs.append(newPID)
        XCTAssertTrue(rec2.events.contains(.started(name: "wlt-daemon", pid: newPID)))
        await second.stop(name: "wlt-daemon", timeout: 2)
        XCTAssertFalse(alive(newPID))
    }

    func testSurvivorWithAChangedSpecIsReplacedAndStaleRecordsIgnored() async throws {
        let first = supervisor(SupervisorRecorder())
        var spec = ProcessSpec(name: "wlt-changed", executable: "/bin/sleep", arguments: ["30"])
        let pid = try await first.start(spec)
        extraPIDs.append(pid)
        await first.detachAll()
        spec.arguments = ["31"]
        let second = supervisor(SupervisorRecorder())
        let newPID = try await second.start(spec)
        extraPIDs.append(newPID)
        XCTAssertNotEqual(newPID, pid)
        XCTAssertFalse(alive(pid), "the survivor with the old spec was stopped")
        let v14 = await second.status(name: "wlt-changed")
        XCTAssertEqual(v14?.adopted, false)
        await second.detachAll()

        // A record whose pid no longer runs that program is stale: a fresh start follows.
        kill(newPID, SIGKILL)
        _ = await eventually { !self.alive(newPID) }
        let third = supervisor(SupervisorRecorder())
        let thirdPID = try await third.start(spec)
        extraPIDs.append(thirdPID)
        XCTAssertNotEqual(thirdPID, newPID)
        let v15 = await third.status(name: "wlt-changed")
        XCTAssertEqual(v15?.adopted, false)
    }

    /// The real agent-restart case: the survivor is not a child of this process (here: a
    /// daemonized sleep reparented away from us), so its exit status is unknown; it is still
    /// adopted, watched through its pidfd and restarted when killed.
    func testAdoptsAProcessThatIsNotOurChild() async throws {
        let spec = ProcessSpec(name: "wlt-orphan", executable: "/bin/sleep", arguments: ["30"],
                               restart: RestartPolicy(minBackoff: 0.05))
        // A launcher shell (spawned with all descriptors closed) backgrounds sleep and exits;
        // sleep is reparented away from this process.
        let launcher = supervisor(SupervisorRecorder())
        let pidFile = dir + "/orphan.pid"
        _ = try await launcher.start(ProcessSpec(name: "wlt-launcher", executable: "/bin/sh",
                                                 arguments: ["-c", "/bin/sleep 30 & echo $! > \(pidFile)"], restart: .never))
        let launched = await eventually { (try? String(contentsOfFile: pidFile, encoding: .utf8))?.hasSuffix("\n") ?? false }
        XCTAssertTrue(launched)
        let pid = try XCTUnwrap(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertNotEqual(ProcessInspection.readSmallFile("/proc/\(pid)/stat")?.split(separator: " ")[3], "\(getpid())",
                          "the orphan must not be our child")
        extraPIDs.append(pid)
        let stat = try XCTUnwrap(ProcessInspection.stat(pid))
        let record = ProcessRecord(name: spec.name, pid: pid, startTime: stat.startTime, executable: spec.executable,
                                   image: try XCTUnwrap(ProcessInspection.image(pid)), specHash: spec.specHash,
                                   startedAt: Date().timeIntervalSince1970)
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: dir + "/state/wlt-orphan.json"))

        let rec = SupervisorRecorder()
        let s = supervisor(rec)
        let adoptedPID = try await s.start(spec)
        XCTAssertEqual(adoptedPID, pid)
        kill(pid, SIGKILL)
        let restarted = await eventually { (await s.status(name: "wlt-orphan")).map { $0.running && $0.pid != pid } ?? false }
        XCTAssertTrue(restarted)
        let status = await s.status(name: "wlt-orphan")
        XCTAssertEqual(status?.lastExit, .unknown, "not our child: the kernel does not give us its status")
        XCTAssertEqual(status?.adopted, false, "the restarted process is our own child")
        XCTAssertTrue(rec.events.contains(.exited(name: "wlt-orphan", pid: pid, status: .unknown, expected: false)))
        if let p = status?.pid { extraPIDs.append(p) }
    }

    func testSpawnFailuresNameTheStep() async throws {
        let s = supervisor(SupervisorRecorder())
        func failure(_ spec: ProcessSpec) async -> String {
            do { _ = try await s.start(spec); return "no error" } catch { return "\(error)" }
        }
        let missing = await failure(ProcessSpec(name: "wlt-missing", executable: "/nonexistent/wlt-prog"))
        XCTAssertEqual(missing, "starting wlt-missing: execve /nonexistent/wlt-prog: No such file or directory")
        let noNS = await failure(ProcessSpec(name: "wlt-nons", executable: "/bin/true", namespace: "wlt-absent"))
        XCTAssertEqual(noNS, "starting wlt-nons in wlt-absent: opening network namespace wlt-absent: No such file or directory")
        let badMount = await failure(ProcessSpec(name: "wlt-badmnt", executable: "/bin/true",
                                                 privateMounts: [BindMount(source: "/nonexistent-wlt", target: "/run")]))
        XCTAssertEqual(badMount, "starting wlt-badmnt: bind-mounting /nonexistent-wlt on /run: No such file or directory")
        let badDir = await failure(ProcessSpec(name: "wlt-baddir", executable: "/bin/true", workingDirectory: "/nonexistent-wlt"))
        XCTAssertEqual(badDir, "starting wlt-baddir: changing the working directory to /nonexistent-wlt: No such file or directory")
        let badName = await failure(ProcessSpec(name: "../x", executable: "/bin/true"))
        XCTAssertTrue(badName.hasPrefix("invalid name \"../x\""), badName)
        let relative = await failure(ProcessSpec(name: "wlt-rel", executable: "sleep"))
        XCTAssertTrue(relative.hasPrefix("invalid executable \"sleep\""), relative)
        let v16 = await s.status(name: "wlt-missing")
        XCTAssertNil(v16, "a failed first start leaves no entry")
    }
}
