// RPCError — the JSON-RPC 2.0 error object, and the one place where Swift errors become
// JSON-RPC error codes.
//
// What: `RPCError` is both the thrown error type of method handlers and the wire error
// object `{code, message, data?}`. Standard codes use the spec's fixed messages
// ("Parse error", "Invalid Request", "Method not found", "Invalid params", "Internal
// error"); Warren's application codes (-32001…-32004) use short fixed messages too. The
// detail is in `data`: `{"field": "ipsecPairingA.peerIp", "reason": "…"}` for field errors,
// `{"reason": "…"}` otherwise, `{"method": "…"}` for unknown methods.
// Invariants: `RPCError(decodingError:)` is the only mapping from DecodingError to
// -32602; field paths are keys joined with "." and array indices as "[i]".
// Reasons must never contain secrets: handlers choose their own reasons; the decoding
// mapping only uses type names and the debugDescription of the failing init(from:).
// Threading: a Sendable value.

/// A JSON-RPC 2.0 error object; throw it from a method handler to return it to the caller.
public struct RPCError: Error, Sendable, Hashable, Codable {
    /// The error code (-32700…-32600 for protocol errors, -32099…-32000 for Warren's).
    public var code: Int
    /// A short, fixed description of the code.
    public var message: String
    /// Structured detail: `{"field", "reason"}` for field errors, `{"reason"}` otherwise.
    public var data: JSONValue?

    /// An error with an arbitrary code, message and data.
    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    // MARK: standard JSON-RPC 2.0 codes

    /// -32700: the payload is not valid JSON.
    public static let parseError = RPCError(code: -32700, message: "Parse error")

    /// -32700 with the parser's explanation in `data.reason`.
    public static func parseError(reason: String) -> RPCError {
        RPCError(code: -32700, message: "Parse error", data: ["reason": .string(reason)])
    }

    /// -32600: the JSON is not a valid request object.
    public static func invalidRequest(_ reason: String) -> RPCError {
        RPCError(code: -32600, message: "Invalid Request", data: ["reason": .string(reason)])
    }

    /// -32601: no method with this name is registered.
    public static func methodNotFound(_ name: String) -> RPCError {
        RPCError(code: -32601, message: "Method not found", data: ["method": .string(name)])
    }

    /// -32602: the params are wrong. `field` is a dotted path such as "localSubnets[2]"
    /// (nil when the params as a whole are wrong).
    public static func invalidParams(field: String?, reason: String) -> RPCError {
        RPCError(code: -32602, message: "Invalid params", data: fieldData(field, reason))
    }

    /// -32603: the server failed. `reason` must not reveal internals or secrets.
    public static func internalError(_ reason: String) -> RPCError {
        RPCError(code: -32603, message: "Internal error", data: ["reason": .string(reason)])
    }

    // MARK: Warren application codes

    /// -32001: a referenced resource does not exist.
    public static func notFound(field: String?, reason: String) -> RPCError {
        RPCError(code: -32001, message: "Not found", data: fieldData(field, reason))
    }

    /// -32002: the request conflicts with existing state (e.g. a name already in use).
    public static func conflict(field: String?, reason: String) -> RPCError {
        RPCError(code: -32002, message: "Conflict", data: fieldData(field, reason))
    }

    /// -32003: the request is valid but cannot be performed in the current state.
    public static func failedPrecondition(field: String? = nil, reason: String) -> RPCError {
        RPCError(code: -32003, message: "Failed precondition", data: fieldData(field, reason))
    }

    /// -32004: a dependency (process, kernel facility, peer) is unavailable right now.
    public static func unavailable(reason: String) -> RPCError {
        RPCError(code: -32004, message: "Unavailable", data: ["reason": .string(reason)])
    }

    private static func fieldData(_ field: String?, _ reason: String) -> JSONValue {
        var data: [String: JSONValue] = ["reason": .string(reason)]
        if let field, !field.isEmpty { data["field"] = .string(field) }
        return .object(data)
    }

    // MARK: accessors

    /// `data.field`, if present.
    public var field: String? { data?["field"]?.stringValue }
    /// `data.reason`, if present.
    public var reason: String? { data?["reason"]?.stringValue }

    // MARK: decoding errors → -32602

    /// Maps a `DecodingError` raised while decoding params to -32602 Invalid params, naming
    /// the field by its coding path ("bgpPairingA.localAsn", "localSubnets[2]") and giving a
    /// human reason ("missing", "expected a string, got an integer", or the message of a
    /// `dataCorrupted` error thrown by a custom `init(from:)`).
    public init(decodingError: DecodingError) {
        let field: String
        let reason: String
        switch decodingError {
        case .keyNotFound(let key, let context):
            field = RPCError.fieldPath(context.codingPath + [key])
            reason = "missing"
        case .typeMismatch(let type, let context):
            field = RPCError.fieldPath(context.codingPath)
            reason = context.debugDescription.hasPrefix("expected ")
                ? context.debugDescription : "expected \(RPCError.describe(type))"
        case .valueNotFound(let type, let context):
            field = RPCError.fieldPath(context.codingPath)
            reason = context.debugDescription.hasPrefix("expected ") || context.debugDescription.hasPrefix("missing")
                ? context.debugDescription : "expected \(RPCError.describe(type)), got null"
        case .dataCorrupted(let context):
            field = RPCError.fieldPath(context.codingPath)
            reason = context.debugDescription.isEmpty ? "invalid value" : context.debugDescription
        @unknown default:
            field = ""
            reason = "invalid value"
        }
        self = .invalidParams(field: field.isEmpty ? nil : field, reason: reason)
    }

    /// Formats a coding path: keys joined with ".", array indices as "[i]".
    public static func fieldPath(_ path: [CodingKey]) -> String {
        var out = ""
        for key in path {
            if let index = key.intValue, key.stringValue == "Index \(index)" {
                out += "[\(index)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        case is Int.Type, is Int8.Type, is Int16.Type, is Int32.Type, is Int64.Type,
            is UInt.Type, is UInt8.Type, is UInt16.Type, is UInt32.Type, is UInt64.Type:
            return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array<") || name.hasPrefix("[") && !name.contains(":") { return "an array" }
            if name.hasPrefix("Dictionary<") || name.hasPrefix("[") { return "an object" }
            return "a value of type \(name)"
        }
    }
}

extension RPCError: CustomStringConvertible {
    /// "Invalid params (-32602): localSubnets[2]: expected a string" — for logs and CLIs.
    /// Contains no params values, only the field path and reason.
    public var description: String {
        var text = "\(message) (\(code))"
        if let field { text += ": \(field)" }
        if let reason { text += ": \(reason)" }
        if let method = data?["method"]?.stringValue { text += ": \(method)" }
        return text
    }
}
