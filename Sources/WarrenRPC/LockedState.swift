// LockedState — a value guarded by a lock, for the few pieces of WarrenRPC state that
// are shared between threads (method table, server lifecycle, subscription sets).
//
// Invariants: the value is only ever touched inside `withLock`; closures passed to
// `withLock` must be short and must not call back into code that takes the same lock
// (NSLock is not recursive).
// Threading: safe from any thread or task. WarrenRPC may not depend on
// NIOConcurrencyHelpers (not a declared product of the target), so this wraps NSLock.

import Foundation

/// A value protected by a non-recursive lock.
final class LockedState<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with exclusive access to the value.
    @discardableResult
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
