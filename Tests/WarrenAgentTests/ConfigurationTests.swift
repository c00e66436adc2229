// AgentConfiguration: parsing (unknown keys refused by name, wrong types named by path,
// the command line's state directory winning) and validation (the token file's mode and
// content, listener syntax, limits).

import Foundation
@testable import WarrenAgent
import WarrenRPC
import XCTest

final class ConfigurationTests: XCTestCase {
    func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(chmod(path, mode), 0)
    }

    func load(_ text: String, stateDirectory: String? = nil) throws -> AgentConfiguration {
        let dir = try makeTempDirectory(self)
        try write(text, to: dir + "/agent.json")
        return try AgentConfiguration.load(path: dir + "/agent.json", stateDirectory: stateDirectory)
    }

    func assertRefused(_ text: String, stateDirectory: String? = nil, mentioning parts: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(text, stateDirectory: stateDirectory), file: file, line: line) { error in
            XCTAssertTrue(error is ConfigurationError, "\(type(of: error))", file: file, line: line)
            for p in parts { XCTAssertTrue("\(error)".contains(p), "\"\(error)\" lacks \"\(p)\"", file: file, line: line) }
        }
    }

    func testDefaultsNeedNoFile() throws {
        let c = AgentConfiguration(stateDirectory: "/var/lib/warren")
        XCTAssertEqual(c.socketPath, "/var/lib/warren/warren.sock")
        XCTAssertNil(try c.validate(), "no HTTP listener, no token")
        XCTAssertNil(c.plugins, "every compiled-in plugin by default")
    }

    func testFullFileParses() throws {
        let dir = try makeTempDirectory(self)
        try write("0123456789abcdef0123\n", to: dir + "/token")
        let c = try load("""
            {"stateDirectory": "/srv/w", "socket": "/run/w.sock", "logLevel": "debug", "maxRequestBytes": 65536,
             "http": {"listen": "127.0.0.1:8787", "tokenFile": "\(dir)/token"},
             "store": {"synchronous": "normal"}, "flows": {"maxFlows": 1000, "idleTimeoutSeconds": 2.5},
             "datapath": {"enabled": false, "batchSize": 64}, "plugins": ["labels"],
             "pluginSettings": {"ipsec": {"backend": "libipsec"}, "labels": {}}, "daemons": {"stopOnShutdown": true}}
            """)
        XCTAssertEqual(c.stateDirectory, "/srv/w")
        XCTAssertEqual(c.socketPath, "/run/w.sock")
        XCTAssertEqual(c.store?.synchronous, .normal)
        XCTAssertEqual(c.flows?.idleTimeoutSeconds, 2.5)
        XCTAssertEqual(c.datapath?.enabled, false)
        XCTAssertEqual(c.plugins, ["labels"])
        XCTAssertEqual(c.pluginSettings?["ipsec"]?["backend"], "libipsec")
        XCTAssertEqual(c.daemons?.stopOnShutdown, true)
        XCTAssertEqual(try c.validate(), "0123456789abcdef0123", "the token is read and trimmed")
    }

    func testCommandLineStateDirectoryWins() throws {
        XCTAssertEqual(try load(#"{"stateDirectory": "/a"}"#, stateDirectory: "/b").stateDirectory, "/b")
        XCTAssertEqual(try load(#"{"logLevel": "info"}"#, stateDirectory: "/b").stateDirectory, "/b")
        assertRefused(#"{"logLevel": "info"}"#, mentioning: ["stateDirectory is not set"])
    }

    func testUnknownKeyIsRefusedByName() {
        assertRefused(#"{"stateDirectory": "/a", "plugin": ["labels"]}"#, mentioning: ["unknown setting \"plugin\"", "plugins"])
        assertRefused(#"{"stateDirectory": "/a", "sockett": "/x"}"#, mentioning: ["\"sockett\""])
    }

    func testWrongTypesAreNamedByPath() {
        assertRefused(#"{"stateDirectory": "/a", "flows": {"maxFlows": "many"}}"#, mentioning: ["flows.maxFlows", "expected an integer"])
        assertRefused(#"{"stateDirectory": "/a", "http": {"listen": "127.0.0.1:1"}}"#, mentioning: ["http.tokenFile", "missing"])
        assertRefused(#"{"stateDirectory": "/a", "store": {"synchronous": "sometimes"}}"#, mentioning: ["store.synchronous"])
        assertRefused(#"{"stateDirectory": "/a", "plugins": "labels"}"#, mentioning: ["plugins"])
        assertRefused(#"{"stateDirectory": 7}"#, mentioning: ["stateDirectory"])
        assertRefused(#"["stateDirectory"]"#, mentioning: ["must be a JSON object"])
        assertRefused(#"{"stateDirectory": "/a",,}"#, mentioning: ["not valid JSON"])
        XCTAssertThrowsError(try AgentConfiguration.load(path: "/nonexistent/warren.json", stateDirectory: nil)) { e in
            XCTAssertTrue("\(e)".contains("cannot read configuration file /nonexistent/warren.json"), "\(e)")
        }
    }

    func testValidationNamesTheSetting() throws {
        func refused(_ c: AgentConfiguration, _ part: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try c.validate(), file: file, line: line) { e in
                XCTAssertTrue("\(e)".hasPrefix(part), "\"\(e)\" does not start with \(part)", file: file, line: line)
            }
        }
        var c = AgentConfiguration(stateDirectory: "/a")
        c.logLevel = "loud"
        refused(c, "logLevel:")
        c = AgentConfiguration(stateDirectory: "/a")
        c.maxRequestBytes = 100
        refused(c, "maxRequestBytes:")
        c = try load(#"{"stateDirectory": "/a", "flows": {"maxFlows": 3}}"#)
        refused(c, "flows.maxFlows:")
        c = try load(#"{"stateDirectory": "/a", "flows": {"idleTimeoutSeconds": 0}}"#)
        refused(c, "flows.idleTimeoutSeconds:")
        c = try load(#"{"stateDirectory": "/a", "datapath": {"receiveRingSlots": 8}}"#)
        refused(c, "datapath.receiveRingSlots:")
        c = try load(#"{"stateDirectory": "/a", "datapath": {"receiveRingSlots": 512, "receiveRing": true}}"#)
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.datapath?.receiveRingSlots, 512)
        c = try load(#"{"stateDirectory": "/a", "http": {"listen": "8787", "tokenFile": "/x"}}"#)
        refused(c, "http.listen:")
        c = try load(#"{"stateDirectory": "/a", "http": {"listen": "127.0.0.1:99999", "tokenFile": "/x"}}"#)
        refused(c, "http.listen:")
        c = try load(#"{"stateDirectory": "/a", "http": {"listen": "127.0.0.1:8787", "tokenFile": "/nonexistent/token"}}"#)
        refused(c, "http.tokenFile: cannot read")
    }

    func testTokenFileMustBePrivateAndLongEnough() throws {
        let dir = try makeTempDirectory(self)
        let token = dir + "/token"
        let secret = "s3cr3t-token-value-0123456789"
        try write(secret, to: token, mode: 0o644)
        let c = try load(#"{"stateDirectory": "/a", "http": {"listen": "127.0.0.1:8787", "tokenFile": "\#(token)"}}"#)
        XCTAssertThrowsError(try c.validate()) { e in
            let text = "\(e)"
            XCTAssertTrue(text.hasPrefix("http.tokenFile:") && text.contains("mode 644") && text.contains("chmod 600"), text)
            XCTAssertFalse(text.contains(secret), "the token never appears in an error")
        }
        for mode: mode_t in [0o640, 0o604, 0o660] {
            XCTAssertEqual(chmod(token, mode), 0)
            XCTAssertThrowsError(try c.validate(), "mode \(String(mode, radix: 8)) must be refused")
        }
        for mode: mode_t in [0o600, 0o400] {
            XCTAssertEqual(chmod(token, mode), 0)
            XCTAssertEqual(try c.validate(), secret)
        }
        try write("short\n", to: token)
        XCTAssertThrowsError(try c.validate()) { e in
            XCTAssertTrue("\(e)".contains("at least 16 characters"), "\(e)")
            XCTAssertFalse("\(e)".contains("short"))
        }
    }
}
