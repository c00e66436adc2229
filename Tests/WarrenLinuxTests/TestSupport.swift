// Helpers for WarrenLinux tests: running shell commands (tests may use `ip` to check what
// the library did) and scratch namespaces with the `wlt` prefix that are always removed.
// Threading: used from test methods only.

import Foundation
import XCTest
@testable import WarrenLinux

/// Runs `/bin/sh -c command`; returns exit status and combined output.
@discardableResult
func shell(_ command: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs a command that must succeed; returns its output.
@discardableResult
func mustShell(_ command: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let r = try shell(command)
    if r.status != 0 {
        XCTFail("`\(command)` exited \(r.status): \(r.output)", file: file, line: line)
        throw NSError(domain: "shell", code: Int(r.status))
    }
    return r.output
}

/// Namespaces created for one test; `removeAll()` deletes them (call it from tearDown).
final class ScratchNamespaces {
    private(set) var names: [String] = []

    /// Creates `wlt-<suffix>` (deleting a stale one left by a crashed run first).
    @discardableResult
    func make(_ suffix: String) throws -> String {
        let name = "wlt-" + suffix
        if NetworkNamespace.exists(name) { try? NetworkNamespace.delete(name) }
        try NetworkNamespace.create(name)
        names.append(name)
        return name
    }

    func removeAll() {
        for name in names where NetworkNamespace.exists(name) {
            try? NetworkNamespace.delete(name)
        }
        names.removeAll()
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
func waitUntil(timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}
