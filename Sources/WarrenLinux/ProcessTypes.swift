// Value types of the process supervisor: what to run (ProcessSpec), how to restart it
// (RestartPolicy), what happened (ProcessEvent, ExitStatus) and where it stands
// (ProcessStatus), plus the on-disk record that lets a new agent adopt a survivor.
// Threading: values (Sendable).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import COpenSSL

/// A bind mount into a supervised process's private mount namespace.
public struct BindMount: Codable, Sendable, Hashable {
    /// The existing host path to mount.
    public var source: String
    /// Where the child sees it (e.g. "/run").
    public var target: String
    /// Creates a bind mount of `source` on `target`.
    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }
}

/// When and how fast a process that exits unexpectedly is restarted.
public struct RestartPolicy: Codable, Sendable, Hashable {
    /// Whether to restart at all.
    public var enabled: Bool
    /// The first delay, in seconds; doubled after each failure.
    public var minBackoff: Double
    /// The largest delay, in seconds.
    public var maxBackoff: Double
    /// A process that ran at least this long (seconds) counts as healthy: backoff starts over.
    public var resetAfter: Double
    /// Give up (emit `.gaveUp`) after this many restarts; nil means never.
    public var maxRestarts: Int?

    /// The default: restart with backoff 0.5 s … 30 s, reset after 60 s, forever.
    public init(enabled: Bool = true, minBackoff: Double = 0.5, maxBackoff: Double = 30, resetAfter: Double = 60,
                maxRestarts: Int? = nil) {
        self.enabled = enabled; self.minBackoff = minBackoff; self.maxBackoff = maxBackoff
        self.resetAfter = resetAfter; self.maxRestarts = maxRestarts
    }

    /// Never restart.
    public static let never = RestartPolicy(enabled: false)

    /// The delay before restart number `failures + 1` after `failures` quick failures.
    public func delay(afterFailures failures: Int) -> Double {
        min(maxBackoff, minBackoff * pow2(min(failures, 60)))
    }

    private func pow2(_ n: Int) -> Double { Double(UInt64(1) << UInt64(n)) }
}

/// A daemon to supervise.
public struct ProcessSpec: Codable, Sendable, Hashable {
    /// Unique key within a supervisor (and the state file's name): letters, digits, ".", "_", "-".
    public var name: String
    /// Absolute path of the program (not searched in PATH).
    public var executable: String
    /// Arguments after argv[0] (argv[0] is `executable`). Never logged.
    public var arguments: [String]
    /// The complete environment of the child (nothing is inherited). Never logged.
    public var environment: [String: String]
    /// A named network namespace to run in; nil: the agent's.
    public var namespace: String?
    /// Non-empty: the child gets its own mount namespace (/ made rprivate) with these binds.
    public var privateMounts: [BindMount]
    /// stdout and stderr are appended here; nil: /dev/null.
    public var logFile: String?
    /// The working directory; nil: "/".
    public var workingDirectory: String?
    /// Restart behaviour after unexpected exits.
    public var restart: RestartPolicy

    /// Creates a spec.
    public init(name: String, executable: String, arguments: [String] = [], environment: [String: String] = [:],
                namespace: String? = nil, privateMounts: [BindMount] = [], logFile: String? = nil,
                workingDirectory: String? = nil, restart: RestartPolicy = RestartPolicy()) {
        self.name = name; self.executable = executable; self.arguments = arguments; self.environment = environment
        self.namespace = namespace; self.privateMounts = privateMounts; self.logFile = logFile
        self.workingDirectory = workingDirectory; self.restart = restart
    }

    /// SHA-256 (hex) of the spec's canonical JSON: equal specs, equal hashes across restarts.
    public var specHash: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data()
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = data.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &digest, &length, EVP_sha256(), nil)
        }
        return hexString(digest)
    }

    /// Throws `ArgumentError` for a spec that cannot be run.
    func validate() throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.count <= 100, !name.hasPrefix("."), name.allSatisfy({ allowed.contains($0) }) else {
            throw ArgumentError(argument: "name", value: name, reason: "use 1–100 letters, digits, \".\", \"_\" or \"-\", not starting with \".\"")
        }
        guard executable.hasPrefix("/") else {
            throw ArgumentError(argument: "executable", value: executable, reason: "must be an absolute path")
        }
        if let namespace { _ = try NetworkNamespace.path(of: namespace) }
        for m in privateMounts where !m.source.hasPrefix("/") || !m.target.hasPrefix("/") {
            throw ArgumentError(argument: "privateMounts", value: "\(m.source) -> \(m.target)", reason: "source and target must be absolute paths")
        }
        if let w = workingDirectory, !w.hasPrefix("/") {
            throw ArgumentError(argument: "workingDirectory", value: w, reason: "must be an absolute path")
        }
        guard restart.minBackoff > 0, restart.maxBackoff >= restart.minBackoff, restart.resetAfter >= 0 else {
            throw ArgumentError(argument: "restart", value: "\(restart)", reason: "need 0 < minBackoff <= maxBackoff and resetAfter >= 0")
        }
    }
}

/// How a process ended.
public enum ExitStatus: Codable, Sendable, Hashable, CustomStringConvertible {
    /// exit(code).
    case exited(Int32)
    /// Killed by a signal.
    case signaled(Int32)
    /// Not our child (adopted from an earlier agent): the kernel does not tell us.
    case unknown

    public var description: String {
        switch self {
        case .exited(let c): "exit status \(c)"
        case .signaled(let s): "signal \(s)"
        case .unknown: "unknown status (adopted process)"
        }
    }
}

/// Where a supervised process stands.
public struct ProcessStatus: Sendable, Hashable {
    /// The current (or last) pid.
    public var pid: Int32
    /// Whether it is running now.
    public var running: Bool
    /// How many times it was restarted after unexpected exits.
    public var restarts: Int
    /// How the last run ended, if one did.
    public var lastExit: ExitStatus?
    /// When the current (or last) run started, Unix time in seconds.
    public var startedAt: Double
    /// Whether the current run was adopted from an earlier supervisor.
    public var adopted: Bool
    /// Whether a restart is scheduled.
    public var restartPending: Bool
}

/// Something that happened to a supervised process.
public enum ProcessEvent: Sendable, Hashable {
    /// Started (first start or a restart).
    case started(name: String, pid: Int32)
    /// A process left running by an earlier supervisor was taken over.
    case adopted(name: String, pid: Int32)
    /// Ended; `expected` when it was asked to stop.
    case exited(name: String, pid: Int32, status: ExitStatus, expected: Bool)
    /// Will be restarted after `delay` seconds (attempt = restart number).
    case restarting(name: String, attempt: Int, delay: Double)
    /// Restarts stopped (limit reached); `reason` says why.
    case gaveUp(name: String, restarts: Int, reason: String)
}

/// A supervisor operation failed. `description` names the process and the step.
public struct ProcessSupervisorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The state file `<stateDirectory>/<name>.json` of a running process.
struct ProcessRecord: Codable, Equatable {
    var name: String
    var pid: Int32
    /// /proc/PID/stat field 22 (start time in clock ticks since boot).
    var startTime: UInt64
    /// The spec's executable.
    var executable: String
    /// readlink(/proc/PID/exe) right after exec (differs for scripts: the interpreter).
    var image: String
    var specHash: String
    var startedAt: Double
}
