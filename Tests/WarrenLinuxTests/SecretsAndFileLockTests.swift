// Tests for Secrets (OpenSSL randomness, constant-time compare) and FileLock (exclusive,
// holder pid in the message, released on unlock and on process death).

import Foundation
import XCTest
@testable import WarrenLinux

final class SecretsTests: XCTestCase {
    func testRandomBytesAreFreshAndOfTheRightLength() {
        XCTAssertEqual(Secrets.randomBytes(0), [])
        let a = Secrets.randomBytes(32), b = Secrets.randomBytes(32)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b)
        // 64 KiB of output uses every byte value (a constant or counter would not).
        XCTAssertEqual(Set(Secrets.randomBytes(65536)).count, 256)
    }

    func testTokensAreHexOfTwiceTheByteCount() {
        let t = Secrets.randomToken()
        XCTAssertEqual(t.count, 64)
        XCTAssertTrue(t.allSatisfy { "0123456789abcdef".contains($0) })
        XCTAssertEqual(Secrets.randomToken(bytes: 4).count, 8)
        XCTAssertNotEqual(Secrets.randomToken(), Secrets.randomToken())
    }

    func testConstantTimeEqual() {
        XCTAssertTrue(Secrets.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(Secrets.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(Secrets.constantTimeEqual([1, 2, 3], [1, 2]))
        XCTAssertTrue(Secrets.constantTimeEqual([], []))
        XCTAssertTrue(Secrets.constantTimeEqual("token", "token"))
        XCTAssertFalse(Secrets.constantTimeEqual("token", "tokem"))
    }
}

final class FileLockTests: XCTestCase {
    private var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "wlt-lock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testSecondLockFailsNamingTheHolderAndUnlockReleases() throws {
        let path = dir + "/agent.lock"
        let first = try FileLock.tryLock(path: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "\(getpid())\n")
        XCTAssertThrowsError(try FileLock.tryLock(path: path)) { error in
            XCTAssertEqual("\(error)", "state directory \(dir) is in use by another warren-agent (pid \(getpid()))")
        }
        first.unlock()
        XCTAssertFalse(first.isLocked)
        let second = try FileLock.tryLock(path: path)
        XCTAssertTrue(second.isLocked)
        second.unlock()
    }

    func testLockHeldByAnotherProcessAndReleasedWhenItDies() throws {
        let path = dir + "/agent.lock"
        // A shell holds the lock on fd 9 and becomes `sleep` (same pid, same fd); it writes
        // no pid into the file, so none is known…
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 9>\(path); flock -x 9; exec sleep 30"]
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() } }
        XCTAssertTrue(waitUntil { (try? FileLock.tryLock(path: path)) == nil })
        XCTAssertThrowsError(try FileLock.tryLock(path: path)) { error in
            XCTAssertEqual(error as? FileLockError, .held(directory: dir, holderPID: nil))
        }
        // …and when it dies the kernel drops the lock.
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let lock = try FileLock.tryLock(path: path)
        lock.unlock()
        XCTAssertThrowsError(try FileLock.tryLock(path: "/nonexistent-wlt/agent.lock")) { error in
            XCTAssertTrue("\(error)".hasPrefix("opening lock file /nonexistent-wlt/agent.lock"), "\(error)")
        }
    }
}
