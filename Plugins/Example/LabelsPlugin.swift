// LabelsPlugin ("labels"): key/value labels on topology resources, for cloud
// integrators who map their own identifiers (tenant, instance, network) onto Warren's
// ports, routers and bridges. Small on purpose — it is the worked example of
// Docs/plugins.md — but real: persisted, validated, evented, and garbage-collected when
// the labelled resource is deleted.
//
// Methods: labels.set, labels.get, labels.delete, labels.find.
// Events: topic "labels" on every change.
// Threading: an actor; the agent runs it as a Service.

import Foundation
import Logging
import ServiceLifecycle
import WarrenAgent
import WarrenCore
import WarrenRPC

public actor LabelsPlugin: WarrenPlugin {
    public static let name = "labels"
    public static let summary = "Key/value labels on bridges, routers, ports and chains."

    /// One labelled resource, as stored.
    struct Record: Codable, Sendable {
        var kind: ResourceKind
        var id: ResourceID
        var labels: [String: String]
    }

    let context: PluginContext
    private var records: [String: Record] = [:]

    public init(context: PluginContext) async throws {
        self.context = context
        for r in try context.store.all("resource", as: Record.self) { records[Self.key(r.kind, r.id)] = r }
    }

    static func key(_ kind: ResourceKind, _ id: ResourceID) -> String { kind.rawValue + "/" + id.description }

    // MARK: methods

    struct Target: Codable, Sendable {
        /// bridge, router, port or chain.
        var kind: ResourceKind
        /// ID or name.
        var id: String
    }

    struct SetParams: Codable, Sendable {
        var resource: Target
        var key: String
        var value: String
    }

    struct KeyParams: Codable, Sendable {
        var resource: Target
        var key: String
    }

    struct GetParams: Codable, Sendable {
        var resource: Target
    }

    struct FindParams: Codable, Sendable {
        var key: String
        var value: String?
    }

    struct Labelled: Codable, Sendable {
        var kind: ResourceKind
        var id: ResourceID
        var name: String
        var labels: [String: String]
    }

    struct Found: Codable, Sendable {
        var items: [Labelled]
    }

    public nonisolated func registerMethods(_ methods: PluginMethods) {
        methods.register("set", summary: "Set a label on a resource.", params: SetParams.self, result: Labelled.self) { p, _ in
            try await self.set(p)
        }
        methods.register("get", summary: "The labels of a resource.", params: GetParams.self, result: Labelled.self) { p, _ in
            try await self.get(p.resource)
        }
        methods.register("delete", summary: "Remove a label from a resource.", params: KeyParams.self, result: Labelled.self) { p, _ in
            try await self.remove(p)
        }
        methods.register("find", summary: "Resources carrying a label (and value, if given).", params: FindParams.self, result: Found.self) { p, _ in
            await self.find(p)
        }
    }

    public func status() async -> String { "\(records.count) labelled resource(s)" }

    /// Resolves a target against the current topology.
    private func resolve(_ t: Target) async throws -> (ResourceID, String) {
        guard [.bridge, .router, .port, .chain].contains(t.kind) else {
            throw RPCError.invalidParams(field: "resource.kind", reason: "labels go on bridges, routers, ports and chains")
        }
        let topology = await context.network.topology
        guard let id = topology.resolve(t.kind, t.id) else {
            throw RPCError.notFound(field: "resource.id", reason: "no \(t.kind.rawValue) \"\(t.id.prefix(80))\"")
        }
        return (id, name(of: t.kind, id, in: topology))
    }

    private func name(of kind: ResourceKind, _ id: ResourceID, in t: Topology) -> String {
        switch kind {
        case .bridge: t.bridges[id]?.name ?? id.description
        case .router: t.routers[id]?.name ?? id.description
        case .port: t.ports[id]?.name ?? id.description
        case .chain: t.chains[id]?.name ?? id.description
        default: id.description
        }
    }

    static func validate(key: String, value: String?) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789.-_/")
        guard (1...63).contains(key.count), key.allSatisfy({ allowed.contains($0) }) else {
            throw RPCError.invalidParams(field: "key", reason: "1–63 characters of a–z, 0–9, '.', '-', '_', '/'")
        }
        if let v = value {
            guard v.count <= 256, !v.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw RPCError.invalidParams(field: "value", reason: "at most 256 characters, no control characters")
            }
        }
    }

    private func set(_ p: SetParams) async throws -> Labelled {
        try Self.validate(key: p.key, value: p.value)
        let (id, name) = try await resolve(p.resource)
        let k = Self.key(p.resource.kind, id)
        var r = records[k] ?? Record(kind: p.resource.kind, id: id, labels: [:])
        r.labels[p.key] = p.value
        try context.store.put("resource", id: k, name: nil, r)  // committed before we answer
        records[k] = r
        context.events.publish(["resource": .string(k), "key": .string(p.key), "value": .string(p.value)])
        return Labelled(kind: r.kind, id: id, name: name, labels: r.labels)
    }

    private func get(_ t: Target) async throws -> Labelled {
        let (id, name) = try await resolve(t)
        return Labelled(kind: t.kind, id: id, name: name, labels: records[Self.key(t.kind, id)]?.labels ?? [:])
    }

    private func remove(_ p: KeyParams) async throws -> Labelled {
        try Self.validate(key: p.key, value: nil)
        let (id, name) = try await resolve(p.resource)
        let k = Self.key(p.resource.kind, id)
        guard var r = records[k], r.labels[p.key] != nil else {
            throw RPCError.notFound(field: "key", reason: "\(p.resource.kind.rawValue) \(name) has no label \(p.key)")
        }
        r.labels[p.key] = nil
        if r.labels.isEmpty { try context.store.delete("resource", id: k) } else { try context.store.put("resource", id: k, name: nil, r) }
        records[k] = r.labels.isEmpty ? nil : r
        context.events.publish(["resource": .string(k), "key": .string(p.key), "value": .null])
        return Labelled(kind: r.kind, id: id, name: name, labels: r.labels)
    }

    private func find(_ p: FindParams) async -> Found {
        let t = await context.network.topology
        let hits = records.values.filter { r in r.labels[p.key].map { p.value == nil || $0 == p.value } ?? false }
        return Found(items: hits.sorted { $0.id < $1.id }.map { Labelled(kind: $0.kind, id: $0.id, name: name(of: $0.kind, $0.id, in: t), labels: $0.labels) })
    }

    /// Drops labels of resources that no longer exist; returns how many were dropped.
    @discardableResult
    func collectGarbage() async -> Int {
        let t = await context.network.topology
        var dropped = 0
        for (k, r) in records where !t.exists(r.kind, r.id) {
            do {
                try context.store.delete("resource", id: k)
                records[k] = nil
                dropped += 1
            } catch {
                context.logger.warning("cannot drop labels of deleted \(k): \(error)")
            }
        }
        return dropped
    }

    // MARK: service

    public func run() async throws {
        context.logger.info("labels: \(records.count) labelled resource(s)")
        // Sleeping is cut short when the agent shuts down.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.collectGarbage()
                try await Task.sleep(for: .seconds(30))
            }
        }
    }
}
