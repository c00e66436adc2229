// ViciError.swift — errors raised by the vici client and the typed API.
//
// What: one error enum for everything a caller of `ViciClient` can see. Each case names
// what was wrong (the command, the socket path, the field). Invariant: no case carries a
// secret — PSKs are never part of an error, and charon's messages are quoted as charon
// wrote them (charon does not log secrets at the log level we request, 1).
//
// Threading: values, `Sendable`.

/// An error from the vici client.
public enum ViciError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Connecting to charon's vici socket failed (charon not running, not yet listening,
    /// or the path is wrong). `reason` is the system's error text.
    case connectFailed(socketPath: String, reason: String)
    /// The connection is gone (charon exited, was killed, or `close()` was called).
    case disconnected(socketPath: String, reason: String)
    /// charon did not answer `command` within the client's command timeout; the
    /// connection was closed because its request/response pairing is no longer known.
    case timeout(command: String, seconds: Double)
    /// charon has no handler for `command` (CMD_UNKNOWN).
    case unknownCommand(String)
    /// charon has no event source called `event` (EVENT_UNKNOWN).
    case unknownEvent(String)
    /// charon answered `command` with `success = no`; `message` is its `errmsg` (plus, for
    /// initiate/terminate, the last relevant lines of charon's control log).
    case commandFailed(command: String, message: String)
    /// charon sent something the protocol does not allow here.
    case protocolViolation(String)
    /// A packet or message could not be encoded or decoded.
    case codec(ViciCodecError)
    /// A configuration value is invalid; `field` names it.
    case invalidConfiguration(field: String, reason: String)
    /// A response lacked a field the typed API needs.
    case unexpectedResponse(command: String, reason: String)

    /// A message naming what failed (never containing a secret).
    public var description: String {
        switch self {
        case .connectFailed(let path, let reason):
            return "cannot connect to charon's vici socket \(path): \(reason) (is charon running and listening there?)"
        case .disconnected(let path, let reason):
            return "vici connection to \(path) lost: \(reason)"
        case .timeout(let command, let seconds):
            return "charon did not answer vici command '\(command)' within \(seconds) s; connection closed"
        case .unknownCommand(let c):
            return "charon does not know the vici command '\(c)'"
        case .unknownEvent(let e):
            return "charon does not know the vici event '\(e)'"
        case .commandFailed(let c, let m):
            return "vici command '\(c)' failed: \(m)"
        case .protocolViolation(let m):
            return "vici protocol violation: \(m)"
        case .codec(let e):
            return e.description
        case .invalidConfiguration(let f, let r):
            return "invalid configuration '\(f)': \(r)"
        case .unexpectedResponse(let c, let r):
            return "unexpected response to vici command '\(c)': \(r)"
        }
    }
}
