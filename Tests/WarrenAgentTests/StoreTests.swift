// Store: migrations, refusal of corrupt and newer-schema files (without touching them),
// transactional writes, reads, and PluginStore namespacing.

import Foundation
import GRDB
@testable import WarrenAgent
import XCTest

final class StoreTests: XCTestCase {
    struct Item: Codable, Equatable {
        var n: Int
        var s: String
    }

    func fileBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    func testFreshStoreIsMigratedPrivateAndDurable() throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/s.db")
        let applied = try store.pool.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        XCTAssertEqual(applied, ["v1: resources"])
        let columns = try store.pool.read { db in try db.columns(in: "resources").map(\.name) }
        XCTAssertEqual(Set(columns), ["kind", "id", "name", "body", "updated"])
        var st = stat()
        XCTAssertEqual(stat(dir + "/s.db", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "the store holds pre-shared keys: it must be private")
        // synchronous FULL (2) by default, NORMAL (1) when asked; WAL journal.
        XCTAssertEqual(try store.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }, 2)
        XCTAssertEqual(try store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }, "wal")
        try store.close()
        let normal = try Store(path: dir + "/n.db", synchronous: .normal)
        XCTAssertEqual(try normal.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }, 1)
        try normal.close()
        // Reopening an up-to-date store migrates nothing and keeps the data.
        let again = try Store(path: dir + "/s.db")
        XCTAssertEqual(try again.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM grdb_migrations") }, 1)
        try again.close()
    }

    func testWriteReadUpdateDeleteAndOrder() throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/s.db")
        try store.write([.put(kind: "k", id: "1", name: "one", body: Store.encode(Item(n: 1, s: "a"))),
                         .put(kind: "k", id: "2", name: "two", body: Store.encode(Item(n: 2, s: "b")))])
        try store.write([.put(kind: "other", id: "1", name: "one", body: Store.encode(Item(n: 9, s: "z")))])
        XCTAssertEqual(try store.all("k", as: Item.self), [Item(n: 1, s: "a"), Item(n: 2, s: "b")])
        XCTAssertEqual(try store.count(kind: "k"), 2)
        XCTAssertEqual(try store.count(kind: "other"), 1, "names are unique per kind, not across kinds")
        // Same (kind, id): the row is replaced (name and body), not duplicated, and it
        // moves to the end of the write order.
        Thread.sleep(forTimeInterval: 0.005)
        try store.write([.put(kind: "k", id: "1", name: "uno", body: Store.encode(Item(n: 10, s: "aa")))])
        XCTAssertEqual(try store.count(kind: "k"), 2)
        let rows = try store.bodies(kind: "k")
        XCTAssertEqual(rows.map(\.id), ["2", "1"])
        XCTAssertEqual(rows.map(\.name), ["two", "uno"])
        XCTAssertEqual(try store.all("k", as: Item.self).last, Item(n: 10, s: "aa"))
        // Several unnamed rows are fine.
        try store.write([.put(kind: "k", id: "3", name: nil, body: Store.encode(Item(n: 3, s: ""))),
                         .put(kind: "k", id: "4", name: nil, body: Store.encode(Item(n: 4, s: "")))])
        XCTAssertEqual(try store.count(kind: "k"), 4)
        try store.write([.delete(kind: "k", id: "2"), .delete(kind: "k", id: "404")])
        XCTAssertEqual(try store.all("k", as: Item.self).map(\.n).sorted(), [3, 4, 10])
        try store.write([])  // nothing to do, no transaction
        try store.close()
        // Survives a reopen.
        let again = try Store(path: dir + "/s.db")
        XCTAssertEqual(try again.all("k", as: Item.self).map(\.n).sorted(), [3, 4, 10])
        try again.close()
    }

    func testABatchIsAllOrNothing() throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/s.db")
        try store.write([.put(kind: "k", id: "1", name: "taken", body: Store.encode(Item(n: 1, s: "")))])
        // The second put violates UNIQUE(kind, name): the first put must not stick, and the
        // delete after it never happens.
        XCTAssertThrowsError(try store.write([
            .put(kind: "k", id: "2", name: "fresh", body: Store.encode(Item(n: 2, s: ""))),
            .put(kind: "k", id: "3", name: "taken", body: Store.encode(Item(n: 3, s: ""))),
            .delete(kind: "k", id: "1"),
        ]))
        XCTAssertEqual(try store.bodies(kind: "k").map(\.id), ["1"])
        try store.close()
    }

    func testUndecodableRecordNamesKindAndID() throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/s.db")
        try store.write([.put(kind: "k", id: "bad-1", name: nil, body: Data("{\"n\": \"x\"}".utf8))])
        XCTAssertThrowsError(try store.all("k", as: Item.self)) { error in
            guard case StoreError.decoding(let kind, let id, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(kind, "k")
            XCTAssertEqual(id, "bad-1")
            XCTAssertTrue("\(error)".contains("stored k bad-1 cannot be read"), "\(error)")
        }
        try store.close()
    }

    func testGarbageFileIsRefusedAndUntouched() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/s.db"
        let garbage = Data(String(repeating: "this is not an SQLite database. ", count: 200).utf8)
        try garbage.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Store(path: path)) { error in
            guard case StoreError.corrupt(let p, _) = error else { return XCTFail("expected .corrupt, got \(error)") }
            XCTAssertEqual(p, path)
            let text = "\(error)"
            XCTAssertTrue(text.contains("is corrupt") && text.contains("refusing to start") && text.contains("has not been modified"), text)
        }
        XCTAssertEqual(try fileBytes(path), garbage, "a refused store must not be modified")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    func testDamagedDatabaseIsRefusedAndUntouched() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/s.db"
        do {
            let store = try Store(path: path)
            // Enough rows for several b-tree pages.
            for batch in 0..<20 {
                try store.write((0..<50).map { i in
                    .put(kind: "port", id: "\(batch)-\(i)", name: "p\(batch)-\(i)", body: Data(String(repeating: "x", count: 200).utf8))
                })
            }
            // Move everything from the WAL into the main file, so damaging it hits real data.
            try store.pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
            try store.close()
        }
        var bytes = try fileBytes(path)
        guard bytes.count > 8 * 4096 else { return XCTFail("the checkpointed store is only \(bytes.count) bytes") }
        // Smash pages 3…5 (table b-tree pages) with garbage; the header and schema stay valid.
        for i in (2 * 4096)..<(5 * 4096) { bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 7) }
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Store(path: path)) { error in
            guard case StoreError.corrupt = error else { return XCTFail("expected .corrupt, got \(error)") }
        }
        XCTAssertEqual(try fileBytes(path), bytes, "a refused store must not be modified")
    }

    func testNewerSchemaIsRefusedAndUntouched() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/s.db"
        do {
            let store = try Store(path: path)
            try store.write([.put(kind: "bridge", id: "1", name: "b", body: Data("{}".utf8))])
            // A newer agent added a migration this version does not know.
            try store.pool.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v2: zones')")
                try db.execute(sql: "CREATE TABLE zones (id TEXT PRIMARY KEY)")
            }
            // Everything in the main file, the WAL empty: any later write would show.
            try store.pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
            try store.close()
        }
        let before = try fileBytes(path)
        XCTAssertThrowsError(try Store(path: path)) { error in
            guard case StoreError.newerSchema(let p, let unknown) = error else { return XCTFail("expected .newerSchema, got \(error)") }
            XCTAssertEqual(p, path)
            XCTAssertEqual(unknown, ["v2: zones"])
            let text = "\(error)"
            XCTAssertTrue(text.contains("newer warren-agent") && text.contains("v2: zones") && text.contains("has not been modified"), text)
        }
        XCTAssertEqual(try fileBytes(path), before, "a refused store must not be modified")
        let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        XCTAssertEqual(wal, 0, "nothing was written to the refused store's WAL either")
        // And it is still readable as it was, by tools.
        let q = try DatabaseQueue(path: path, configuration: { var c = Configuration(); c.readonly = true; return c }())
        XCTAssertEqual(try q.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM resources") }, 1)
        try q.close()
    }

    func testPluginStoresAreNamespaced() throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/s.db")
        let a = PluginStore(store: store, plugin: "vpn.dynamic")
        let b = PluginStore(store: store, plugin: "vpn.static")
        XCTAssertEqual(a.prefix, "vpn.dynamic:")
        // Same kind, id and name in two plugins and the core: three separate records.
        try a.put("vpn", id: "1", name: "corp", Item(n: 1, s: "dynamic"))
        try b.put("vpn", id: "1", name: "corp", Item(n: 2, s: "static"))
        try store.write([.put(kind: "vpn", id: "1", name: "corp", body: Store.encode(Item(n: 3, s: "core")))])
        XCTAssertEqual(try a.all("vpn", as: Item.self), [Item(n: 1, s: "dynamic")])
        XCTAssertEqual(try b.all("vpn", as: Item.self), [Item(n: 2, s: "static")])
        XCTAssertEqual(try store.all("vpn", as: Item.self), [Item(n: 3, s: "core")])
        XCTAssertEqual(try store.count(kind: "vpn.dynamic:vpn"), 1)
        // A plugin cannot reach core kinds by naming them.
        try store.write([.put(kind: "port", id: "p", name: "p", body: Data("{}".utf8))])
        XCTAssertEqual(try a.all("port", as: Item.self), [])
        try a.delete("port", id: "p")
        XCTAssertEqual(try store.count(kind: "port"), 1)
        // Deleting in one plugin leaves the other's record.
        try a.delete("vpn", id: "1")
        XCTAssertEqual(try a.all("vpn", as: Item.self), [])
        XCTAssertEqual(try b.all("vpn", as: Item.self).count, 1)
        // Batches are atomic and prefixed too.
        try b.write([try .put("vpn", id: "2", name: "lab", Item(n: 4, s: "")), .delete(kind: "vpn", id: "1")])
        XCTAssertEqual(try b.all("vpn", as: Item.self), [Item(n: 4, s: "")])
        XCTAssertThrowsError(try b.write([.delete(kind: "vpn", id: "2"), try .put("vpn", id: "3", name: "lab", Item(n: 5, s: "")),
                                          try .put("vpn", id: "4", name: "lab", Item(n: 6, s: ""))]))
        XCTAssertEqual(try b.all("vpn", as: Item.self), [Item(n: 4, s: "")], "a failed batch leaves nothing behind")
        try store.close()
    }
}
