// Errors thrown by WarrenLinux, each naming what was being done and to which object.
//
// - `SystemCallError`: a failed system call (errno), with the operation in words.
// - `ArgumentError`: caller input that did not parse or validate, naming the argument.
// - `NetlinkError` (Netlink.swift): a failed netlink request.
// Error texts never contain secrets: callers pass only names, paths and addresses.
// Threading: plain values, Sendable.

#if canImport(Glibc)
import Glibc
#endif

/// A system call failed. `description` reads like "creating namespace wlt-a: File exists".
public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What was being done, e.g. "creating namespace wlt-a".
    public let operation: String
    /// The errno value.
    public let errno: Int32

    /// Creates an error for `operation` failing with `errno`.
    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(errorText(errno))" }
}

/// An argument did not parse or validate. `description` names the argument and the value.
public struct ArgumentError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The parameter name, e.g. "cidr".
    public let argument: String
    /// The rejected value.
    public let value: String
    /// Why it was rejected.
    public let reason: String

    /// Creates an error for `argument` = `value` being invalid because of `reason`.
    public init(argument: String, value: String, reason: String) {
        self.argument = argument
        self.value = value
        self.reason = reason
    }

    public var description: String { "invalid \(argument) \"\(value)\": \(reason)" }
}

/// strerror for an errno value (glibc's strings are static and thread-safe to read).
func errorText(_ code: Int32) -> String {
    guard let s = strerror(code) else { return "error \(code)" }
    return String(cString: s)
}
