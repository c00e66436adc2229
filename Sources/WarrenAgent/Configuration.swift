// AgentConfiguration: the agent's settings. Everything has a default, so an agent runs
// with no configuration file at all; a JSON file overrides what it names.
//
// Unknown keys are refused (a typo must not silently fall back to a default), and every
// error names the offending key.

import Foundation
import WarrenRPC

public struct AgentConfiguration: Codable, Sendable {
    /// Where the store, the socket, the lock and plugin state live.
    public var stateDirectory: String
    /// The Unix socket (default `<stateDirectory>/warren.sock`).
    public var socket: String?
    /// The optional TCP listener for HTTP `POST /rpc` and `GET /metrics`.
    public var http: HTTP?
    /// trace, debug, info, notice, warning, error, critical.
    public var logLevel: String?
    /// Largest request accepted, in bytes (default 1 MiB).
    public var maxRequestBytes: Int?
    public var store: StoreSettings?
    public var flows: FlowSettings?
    public var datapath: DatapathSettings?
    /// Plugins to enable by name; all compiled-in plugins when omitted.
    public var plugins: [String]?
    /// Each plugin's own settings, by plugin name.
    public var pluginSettings: [String: JSONValue]?
    public var daemons: DaemonSettings?

    public struct HTTP: Codable, Sendable {
        /// "host:port", e.g. "127.0.0.1:8787".
        public var listen: String
        /// A file holding the bearer token (mode 0600 or stricter).
        public var tokenFile: String
    }

    public struct StoreSettings: Codable, Sendable {
        /// "full" (default: commits survive power loss) or "normal" (survive a crash).
        public var synchronous: Store.Synchronous?
    }

    public struct FlowSettings: Codable, Sendable {
        public var maxFlows: Int?
        public var idleTimeoutSeconds: Double?
        public var exactMatchEntries: Int?
    }

    public struct DatapathSettings: Codable, Sendable {
        /// false runs the agent as a pure control plane (no packet sockets).
        public var enabled: Bool?
        public var batchSize: Int?
        /// false receives with recvmmsg instead of a TPACKET_V2 ring.
        public var receiveRing: Bool?
        /// Frame slots per port's receive ring (16…4096; default 256, ~0.55 MiB per port).
        public var receiveRingSlots: Int?
    }

    public struct DaemonSettings: Codable, Sendable {
        /// true stops plugin daemons (charon, BIRD) when the agent stops; by default they
        /// keep running and are adopted by the next agent, so tunnels survive a restart.
        public var stopOnShutdown: Bool?
    }

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    public var socketPath: String { socket ?? stateDirectory + "/warren.sock" }

    static let knownKeys: Set<String> = ["stateDirectory", "socket", "http", "logLevel", "maxRequestBytes", "store",
                                         "flows", "datapath", "plugins", "pluginSettings", "daemons"]

    /// Reads a JSON configuration file; `stateDirectory` from the command line wins.
    public static func load(path: String, stateDirectory: String?) throws -> AgentConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read configuration file \(path)")
        }
        let raw: JSONValue
        do { raw = try JSONValue(parsing: Array(data)) } catch {
            throw ConfigurationError("\(path) is not valid JSON: \(error)")
        }
        guard case .object(var object) = raw else { throw ConfigurationError("\(path): the configuration must be a JSON object") }
        if let unknown = object.keys.first(where: { !knownKeys.contains($0) }) {
            throw ConfigurationError("\(path): unknown setting \"\(unknown)\" (known: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        if let dir = stateDirectory { object["stateDirectory"] = .string(dir) }
        guard object["stateDirectory"] != nil else {
            throw ConfigurationError("\(path): stateDirectory is not set (here or with --state-dir)")
        }
        do {
            return try JSONValueDecoder().decode(AgentConfiguration.self, from: .object(object))
        } catch let e as DecodingError {
            let rpc = RPCError(decodingError: e)
            throw ConfigurationError("\(path): \(rpc.data?["field"]?.stringValue ?? "?"): \(rpc.data?["reason"]?.stringValue ?? rpc.message)")
        }
    }

    /// Checks values and reads the token; returns the token if HTTP is configured.
    public func validate() throws -> String? {
        if let l = logLevel, !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(l) {
            throw ConfigurationError("logLevel: \(l) is not one of trace, debug, info, notice, warning, error, critical")
        }
        if let m = maxRequestBytes, m < 1024 { throw ConfigurationError("maxRequestBytes: must be at least 1024") }
        if let f = flows {
            if let m = f.maxFlows, m < 16 { throw ConfigurationError("flows.maxFlows: must be at least 16") }
            if let t = f.idleTimeoutSeconds, t <= 0 { throw ConfigurationError("flows.idleTimeoutSeconds: must be positive") }
        }
        if let n = datapath?.receiveRingSlots, !(16...4096).contains(n) {
            throw ConfigurationError("datapath.receiveRingSlots: must be 16…4096, got \(n)")
        }
        guard let http else { return nil }
        guard http.listen.split(separator: ":").count == 2, let port = Int(http.listen.split(separator: ":")[1]), (0...65535).contains(port) else {
            throw ConfigurationError("http.listen: expected host:port, got \(http.listen)")
        }
        var st = stat()
        guard stat(http.tokenFile, &st) == 0 else { throw ConfigurationError("http.tokenFile: cannot read \(http.tokenFile)") }
        guard st.st_mode & 0o077 == 0 else {
            throw ConfigurationError("http.tokenFile: \(http.tokenFile) is readable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: http.tokenFile),
              let token = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), token.count >= 16 else {
            throw ConfigurationError("http.tokenFile: \(http.tokenFile) must hold a token of at least 16 characters")
        }
        return token
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
