// Store: the agent's desired state in one SQLite file (GRDB), with schema migrations.
//
// Every resource is one row of `resources` (kind, id, name, JSON body), unique by
// (kind, id) and by (kind, name). Core kinds are "bridge", "router", "port", "route",
// "chain"; plugins use their own namespaced kinds ("vpn.dynamic", ...) through a
// `PluginStore`. A mutation is one transaction; the caller acknowledges only after
// `write` returns, i.e. after the commit.
//
// Durability: WAL journal. `synchronous = FULL` by default (a commit survives power
// loss); `normal` survives a crash or `kill -9` of the agent but not of the host.
// Safety: a database that is corrupt, or was migrated by a newer agent, is refused with
// a clear message and never modified.
// Threading: `Store` is Sendable; GRDB serializes writes and allows concurrent reads.

import Foundation
import GRDB

public enum StoreError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case corrupt(path: String, reason: String)
    case newerSchema(path: String, unknown: [String])
    case decoding(kind: String, id: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            "cannot open the store \(path): \(reason)"
        case .corrupt(let path, let reason):
            "the store \(path) is corrupt (\(reason)); refusing to start. Restore it from a backup or move it away to start empty — it has not been modified"
        case .newerSchema(let path, let unknown):
            "the store \(path) was written by a newer warren-agent (schema migrations \(unknown.joined(separator: ", ")) are unknown to this version); refusing to start — it has not been modified"
        case .decoding(let kind, let id, let reason):
            "stored \(kind) \(id) cannot be read: \(reason)"
        }
    }
}

/// One write inside a store transaction.
public enum StoreWrite: Sendable {
    case put(kind: String, id: String, name: String?, body: Data)
    case delete(kind: String, id: String)
}

public final class Store: Sendable {
    public let path: String
    let pool: DatabasePool

    public enum Synchronous: String, Sendable, Codable { case full, normal }

    /// Opens (creating if needed) the store at `path`, migrating an older schema.
    public init(path: String, synchronous: Synchronous = .full) throws {
        self.path = path
        var config = Configuration()
        config.label = "warren-store"
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
        }
        let existed = FileManager.default.fileExists(atPath: path)
        if existed {
            // Look before touching: a file that is not a SQLite database, or fails its
            // integrity check, is refused without being opened for writing.
            try Store.inspect(path: path)
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw StoreError.cannotOpen(path: path, reason: "\(error)")
        }
        let migrator = Store.migrator
        do {
            let superseded = try pool.read { db in try migrator.hasBeenSuperseded(db) }
            if superseded {
                let unknown = try pool.read { db in try migrator.appliedIdentifiers(db).subtracting(migrator.migrations) }
                throw StoreError.newerSchema(path: path, unknown: unknown.sorted())
            }
            try migrator.migrate(pool)
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError.corrupt(path: path, reason: "\(error)")
        }
        chmod(path, 0o600)
    }

    /// Opens the file read-only and runs SQLite's quick integrity check.
    static func inspect(path: String) throws {
        var config = Configuration()
        config.readonly = true
        do {
            let q = try DatabaseQueue(path: path, configuration: config)
            let result = try q.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
            guard result == "ok" else { throw StoreError.corrupt(path: path, reason: result ?? "no answer from quick_check") }
            // A newer schema is refused here, before the file is opened for writing (opening a
            // DatabasePool on a database whose WAL is empty writes to it: GRDB creates and
            // drops a table so that readers can take snapshots).
            let migrator = Store.migrator
            if try q.read({ db in try migrator.hasBeenSuperseded(db) }) {
                let unknown = try q.read { db in try migrator.appliedIdentifiers(db).subtracting(migrator.migrations) }
                try q.close()
                throw StoreError.newerSchema(path: path, unknown: unknown.sorted())
            }
            try q.close()
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError.corrupt(path: path, reason: "\(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: resources") { db in
            try db.create(table: "resources") { t in
                t.column("kind", .text).notNull()
                t.column("id", .text).notNull()
                t.column("name", .text)
                t.column("body", .blob).notNull()
                t.column("updated", .integer).notNull()
                t.primaryKey(["kind", "id"])
                t.uniqueKey(["kind", "name"])
            }
        }
        return m
    }

    /// Applies `writes` in one transaction; returns after the commit.
    public func write(_ writes: [StoreWrite]) throws {
        guard !writes.isEmpty else { return }
        try pool.write { db in
            for w in writes {
                switch w {
                case .put(let kind, let id, let name, let body):
                    try db.execute(sql: """
                        INSERT INTO resources (kind, id, name, body, updated) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT(kind, id) DO UPDATE SET name = excluded.name, body = excluded.body, updated = excluded.updated
                        """, arguments: [kind, id, name, body, Int64(Date().timeIntervalSince1970 * 1000)])
                case .delete(let kind, let id):
                    try db.execute(sql: "DELETE FROM resources WHERE kind = ? AND id = ?", arguments: [kind, id])
                }
            }
        }
    }

    /// Every stored body of `kind`, oldest write first.
    public func bodies(kind: String) throws -> [(id: String, name: String?, body: Data)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, body FROM resources WHERE kind = ? ORDER BY updated, id", arguments: [kind])
                .map { ($0["id"], $0["name"], $0["body"]) }
        }
    }

    /// Decodes every stored resource of `kind`.
    public func all<T: Decodable>(_ kind: String, as type: T.Type) throws -> [T] {
        try bodies(kind: kind).map { row in
            do { return try Store.decoder.decode(T.self, from: row.body) } catch {
                throw StoreError.decoding(kind: kind, id: row.id, reason: "\(error)")
            }
        }
    }

    public func count(kind: String) throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM resources WHERE kind = ?", arguments: [kind]) ?? 0 }
    }

    public static func encode<T: Encodable>(_ value: T) throws -> Data { try encoder.encode(value) }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()
    static let decoder = JSONDecoder()

    public func close() throws { try pool.close() }
}

/// A plugin's view of the store: kinds are prefixed with the plugin's name, so plugins
/// cannot read or clobber each other's (or the core's) records.
public struct PluginStore: Sendable {
    let store: Store
    public let prefix: String

    /// The agent makes one per plugin; tests of a plugin make their own (Docs/plugins.md).
    public init(store: Store, plugin: String) {
        self.store = store
        self.prefix = plugin + ":"
    }

    /// Stores `value` under (kind, id); `name` must be unique per kind (or nil).
    public func put<T: Encodable>(_ kind: String, id: String, name: String?, _ value: T) throws {
        try store.write([.put(kind: prefix + kind, id: id, name: name, body: Store.encode(value))])
    }

    /// Several puts and deletes atomically.
    public func write(_ writes: [PluginStoreWrite]) throws {
        try store.write(try writes.map { w in
            switch w {
            case .put(let kind, let id, let name, let body):
                return .put(kind: prefix + kind, id: id, name: name, body: body)
            case .delete(let kind, let id):
                return .delete(kind: prefix + kind, id: id)
            }
        })
    }

    public func delete(_ kind: String, id: String) throws {
        try store.write([.delete(kind: prefix + kind, id: id)])
    }

    public func all<T: Decodable>(_ kind: String, as type: T.Type) throws -> [T] {
        try store.all(prefix + kind, as: type)
    }
}

public enum PluginStoreWrite: Sendable {
    case put(kind: String, id: String, name: String?, body: Data)
    case delete(kind: String, id: String)

    public static func put<T: Encodable>(_ kind: String, id: String, name: String?, _ value: T) throws -> PluginStoreWrite {
        .put(kind: kind, id: id, name: name, body: try Store.encode(value))
    }
}
