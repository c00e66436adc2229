// ViciCommands.swift — the typed vici API the IPsec plugin uses.
//
// What: thin, typed wrappers over `ViciClient.request` / `streamedRequest` for the vici
// commands Warren needs: load-conn, unload-conn, get-conns, list-conns, load-shared,
// unload-shared, initiate, terminate, list-sas, version, stats.
//
// Invariants:
// - Secrets only travel in the `load-shared` message (key `data`, redacted in every
//   description) and never appear in errors.
// - initiate/terminate request control-log level 1: enough to explain a failure (e.g.
//   "received AUTHENTICATION_FAILED notify error"), never key material; the client's
//   wait for those commands is the command timeout plus the charon-side timeout.
//
// Threading: as `ViciClient` (all methods are async and serialized).

extension ViciClient {
    /// Loads (or replaces) a connection with vici `load-conn`.
    ///
    /// - Throws: `ViciError.invalidConfiguration` from `validate()`, or
    ///   `.commandFailed("load-conn", errmsg)` if charon rejects it.
    public func loadConnection(_ connection: ConnectionConfig) async throws {
        try connection.validate()
        _ = try await request("load-conn", connection.viciMessage())
    }

    /// Unloads a connection by name (`unload-conn`). Established SAs of it are closed.
    public func unloadConnection(_ name: String) async throws {
        _ = try await request("unload-conn", ["name": .string(name)])
    }

    /// Names of the connections loaded over vici (`get-conns`).
    public func connectionNames() async throws -> [String] {
        try await request("get-conns").stringList("conns") ?? []
    }

    /// All loaded connections (`list-conns` streaming `list-conn`).
    public func listConnections(ike: String? = nil) async throws -> [ConnectionInfo] {
        var message: ViciMessage = [:]
        if let ike { message["ike"] = .string(ike) }
        let (_, events) = try await streamedRequest("list-conns", message, event: "list-conn")
        var out: [ConnectionInfo] = []
        for event in events {
            for e in event.entries {
                if case .section(let s) = e.value { out.append(ConnectionInfo(name: e.key, section: s)) }
            }
        }
        return out
    }

    /// Loads an IKE pre-shared key (`load-shared`, type IKE) for the identities in
    /// `owners`. `id` names the key so it can be replaced or unloaded later.
    public func loadSharedKey(id: String, secret: [UInt8], owners: [String]) async throws {
        guard !secret.isEmpty else {
            throw ViciError.invalidConfiguration(field: "sharedKey.\(id).secret", reason: "empty")
        }
        guard !owners.isEmpty else {
            throw ViciError.invalidConfiguration(field: "sharedKey.\(id).owners", reason: "no owner identities")
        }
        let message: ViciMessage = [
            "id": .string(id),
            "type": "IKE",
            "data": .bytes(secret),
            "owners": .strings(owners),
        ]
        _ = try await request("load-shared", message)
    }

    /// Loads an IKE pre-shared key given as text (its UTF-8 bytes are the key).
    public func loadSharedKey(id: String, secret: String, owners: [String]) async throws {
        try await loadSharedKey(id: id, secret: Array(secret.utf8), owners: owners)
    }

    /// Unloads a shared key loaded with `loadSharedKey(id:…)` (`unload-shared`).
    public func unloadSharedKey(id: String) async throws {
        _ = try await request("unload-shared", ["id": .string(id)])
    }

    /// Initiates CHILD_SA `child` (and its IKE_SA) and waits up to `timeoutMs` for the
    /// result (`initiate` streaming `control-log`). Returns charon's log lines.
    ///
    /// - Throws: `.commandFailed("initiate", errmsg + last log lines)` on failure, e.g.
    ///   authentication failed or no proposal chosen.
    @discardableResult
    public func initiate(child: String, ike: String? = nil, timeoutMs: Int = 10_000) async throws -> [String] {
        var message: ViciMessage = ["child": .string(child)]
        if let ike { message["ike"] = .string(ike) }
        message["timeout"] = .string(String(timeoutMs))
        message["loglevel"] = "1"
        let (_, log) = try await streamedRequest("initiate", message, event: "control-log",
                                                 timeout: commandTimeout + .milliseconds(max(timeoutMs, 0)))
        return log.compactMap { $0.string("msg") }
    }

    /// Terminates every IKE_SA of connection `ike` (`terminate`). `force` deletes without
    /// waiting for the peer. Returns charon's log lines.
    @discardableResult
    public func terminate(ike: String, force: Bool = false, timeoutMs: Int = 5_000) async throws -> [String] {
        try await terminate(["ike": .string(ike)], force: force, timeoutMs: timeoutMs)
    }

    /// Terminates the IKE_SA with unique id `ikeId`.
    @discardableResult
    public func terminate(ikeId: UInt32, force: Bool = false, timeoutMs: Int = 5_000) async throws -> [String] {
        try await terminate(["ike_id": .string(String(ikeId))], force: force, timeoutMs: timeoutMs)
    }

    private func terminate(_ selector: ViciMessage, force: Bool, timeoutMs: Int) async throws -> [String] {
        var message = selector
        if force { message["force"] = "yes" }
        message["timeout"] = .string(String(timeoutMs))
        message["loglevel"] = "1"
        let (_, log) = try await streamedRequest("terminate", message, event: "control-log",
                                                 timeout: commandTimeout + .milliseconds(max(timeoutMs, 0)))
        return log.compactMap { $0.string("msg") }
    }

    /// Active IKE_SAs with their CHILD_SAs (`list-sas` streaming `list-sa`), optionally
    /// only those of connection `ike`.
    public func listSAs(ike: String? = nil) async throws -> [IKESAInfo] {
        var message: ViciMessage = [:]
        if let ike { message["ike"] = .string(ike) }
        let (_, events) = try await streamedRequest("list-sas", message, event: "list-sa")
        var out: [IKESAInfo] = []
        for event in events { out += try IKESAInfo.parseList(event) }
        return out
    }

    /// charon's version information (`version`).
    public func version() async throws -> VersionInfo {
        let m = try await request("version")
        guard let daemon = m.string("daemon"), let version = m.string("version") else {
            throw ViciError.unexpectedResponse(command: "version", reason: "no daemon/version keys")
        }
        return VersionInfo(daemon: daemon, version: version, sysname: m.string("sysname") ?? "",
                           release: m.string("release") ?? "", machine: m.string("machine") ?? "")
    }

    /// charon's statistics (`stats`).
    public func stats() async throws -> StatsInfo {
        StatsInfo(try await request("stats"))
    }
}
