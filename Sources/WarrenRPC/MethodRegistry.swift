// MethodRegistry — the table of JSON-RPC methods, request dispatch, and the OpenRPC
// document served by `rpc.discover`.
//
// What: methods are registered with typed params/result (Codable) or raw JSON. A typed
// method's params are decoded with JSONValueDecoder; decoding errors become -32602 through
// RPCError(decodingError:) — the only such mapping. Each registration probes its types
// once (JSONSchema.swift) so `rpc.discover` is generated from the real types.
// `handle(message:context:)` implements JSON-RPC 2.0 framing rules for one message:
// single request, notification, or batch (processed in order, one element at a time).
// Invariants:
//  - duplicate method names are a programming error (precondition);
//  - handler errors: RPCError passes through unchanged; anything else becomes -32603
//    "method X failed" — never the error's text, which may contain internals;
//  - notifications never produce output, even when they fail;
//  - the method table lock is never held while a handler runs.
// Threading: Sendable; register from any thread (typically at startup); `handle` may be
// called concurrently from many connections.

import Foundation

/// How a request reached the server.
public enum RPCTransport: String, Sendable, Hashable {
    /// The newline-delimited JSON Unix socket.
    case unix
    /// HTTP `POST /rpc` on the TCP listener.
    case http
}

/// Per-request information handed to method handlers.
public struct RequestContext: Sendable {
    /// The transport the request arrived on.
    public var transport: RPCTransport
    /// Identifies the connection (unique per server run).
    public var connectionID: UInt64
    /// The connection's subscriptions — only on Unix-socket connections.
    public var subscriptions: SubscriptionSet?

    /// A context; `subscriptions` should be set only for Unix-socket connections.
    public init(transport: RPCTransport, connectionID: UInt64, subscriptions: SubscriptionSet? = nil) {
        self.transport = transport
        self.connectionID = connectionID
        self.subscriptions = subscriptions
    }
}

/// Params of a method that takes none; decodes from `{}` (or absent/null params).
public struct EmptyParams: Codable, Sendable, Hashable {
    public init() {}
    public init(from decoder: Decoder) throws {
        _ = try decoder.container(keyedBy: NoKeys.self)
    }
    public func encode(to encoder: Encoder) throws {
        _ = encoder.container(keyedBy: NoKeys.self)
    }
}

/// The result of a method that returns nothing; encodes as `{}`.
public struct EmptyResult: Codable, Sendable, Hashable {
    public init() {}
    public init(from decoder: Decoder) throws {
        _ = try decoder.container(keyedBy: NoKeys.self)
    }
    public func encode(to encoder: Encoder) throws {
        _ = encoder.container(keyedBy: NoKeys.self)
    }
}

struct NoKeys: CodingKey {
    var stringValue: String { "" }
    var intValue: Int? { nil }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
}

/// What happened to one request, for logging and metrics (no params, no results).
public struct RPCCallRecord: Sendable {
    /// The method name, if the request got that far.
    public var method: String?
    /// Whether it was a notification (no response sent).
    public var isNotification: Bool
    /// The error code returned (nil on success).
    public var errorCode: Int?
    /// For -32603 caused by an unexpected error: a description of that error, for the
    /// server log only (never sent to the client).
    public var internalFailure: String?
    /// Handler time in seconds.
    public var duration: Double
}

/// The registered JSON-RPC methods and the dispatcher that calls them.
public final class MethodRegistry: Sendable {
    /// A handler working on raw JSON params (nil when absent).
    public typealias RawHandler = @Sendable (JSONValue?, RequestContext) async throws -> JSONValue

    struct Method: Sendable {
        let name: String
        let summary: String
        let paramStructure: String
        let params: SchemaDescription
        let result: SchemaDescription
        let handler: RawHandler
    }

    private let methods = LockedState<[String: Method]>([:])
    /// `info.title` of the OpenRPC document.
    public let title: String
    /// `info.version` of the OpenRPC document.
    public let version: String

    /// Creates a registry holding only `rpc.discover`.
    public init(title: String = "Warren", version: String = "0.0.0") {
        self.title = title
        self.version = version
        registerDiscover()
    }

    // MARK: registration

    /// Registers a method with Codable params and result.
    ///
    /// Params must be a JSON object (absent or `null` is treated as `{}`); they are decoded
    /// into `P`, and a decoding failure is answered with -32602 naming the field.
    /// - Precondition: no method named `name` is registered yet.
    public func register<P: Codable & Sendable, R: Codable & Sendable>(
        _ name: String,
        summary: String,
        params: P.Type = P.self,
        result: R.Type = R.self,
        handler: @escaping @Sendable (P, RequestContext) async throws -> R
    ) {
        let raw: RawHandler = { rawParams, context in
            let object: JSONValue
            switch rawParams {
            case nil, .null?: object = .object([:])
            case .object?: object = rawParams!
            default: throw RPCError.invalidParams(field: nil, reason: "params must be an object")
            }
            let decoded: P
            do {
                decoded = try JSONValueDecoder().decode(P.self, from: object)
            } catch let error as DecodingError {
                throw RPCError(decodingError: error)
            } catch let error as RPCError {
                throw error
            } catch {
                // A custom init(from:) threw its own error type: it is about the params.
                throw RPCError.invalidParams(field: nil, reason: String(describing: error))
            }
            // A misspelled optional field must not silently fall back to its default:
            // whatever the params type did not read is refused, by name.
            if let encoded = try? JSONValueEncoder().encode(decoded), let unknown = unknownField(object, encoded, path: "") {
                throw RPCError.invalidParams(field: unknown, reason: "unknown field (not a parameter of \(name))")
            }
            let result = try await handler(decoded, context)
            do {
                return try JSONValueEncoder().encode(result)
            } catch {
                throw MethodResultEncodingFailure(method: name, underlying: error)
            }
        }
        add(
            Method(
                name: name, summary: summary, paramStructure: "by-name",
                params: SchemaDescription(of: P.self), result: SchemaDescription(of: R.self), handler: raw))
    }

    /// Registers a method working on raw JSON (e.g. positional params).
    ///
    /// - Parameters:
    ///   - paramsSchema: JSON Schema of the params: an object schema (`properties`,
    ///     `required`) documents named params; an array schema with `prefixItems` documents
    ///     positional params (each item's `title` names it).
    ///   - resultSchema: JSON Schema of the result.
    /// - Precondition: no method named `name` is registered yet.
    public func registerRaw(
        _ name: String,
        summary: String,
        paramsSchema: JSONValue,
        resultSchema: JSONValue,
        handler: @escaping RawHandler
    ) {
        let structure: String
        var params = SchemaDescription(schema: paramsSchema)
        if paramsSchema["type"] == "array" {
            structure = "by-position"
            let items = paramsSchema["prefixItems"]?.arrayValue ?? paramsSchema["items"]?.arrayValue ?? []
            params.properties = items.enumerated().map { i, schema in
                (schema["title"]?.stringValue ?? "param\(i + 1)", true, schema)
            }
        } else if paramsSchema["type"] == "object" {
            structure = "by-name"
        } else {
            structure = "either"
        }
        add(
            Method(
                name: name, summary: summary, paramStructure: structure, params: params,
                result: SchemaDescription(schema: resultSchema), handler: handler))
    }

    private func add(_ method: Method) {
        methods.withLock { table in
            precondition(table[method.name] == nil, "JSON-RPC method \(method.name) registered twice")
            table[method.name] = method
        }
    }

    /// Names of all registered methods, sorted.
    public var methodNames: [String] {
        methods.withLock { $0.keys.sorted() }
    }

    /// Problems found while generating schemas (empty when every schema is complete).
    public var schemaProblems: [String] {
        methods.withLock { table in
            table.values.sorted { $0.name < $1.name }.flatMap { m in
                (m.params.problems + m.result.problems).map { "\(m.name): \($0)" }
            }
        }
    }

    // MARK: OpenRPC

    private func registerDiscover() {
        registerRaw(
            "rpc.discover",
            summary: "Returns the OpenRPC document describing every method of this server.",
            paramsSchema: ["type": "object", "properties": [:]],
            resultSchema: ["$ref": "https://raw.githubusercontent.com/open-rpc/meta-schema/master/schema.json"]
        ) { [unowned self] _, _ in
            self.openRPCDocument()
        }
    }

    /// The OpenRPC 1.2.6 document for the registered methods (sorted by name).
    public func openRPCDocument() -> JSONValue {
        let all = methods.withLock { $0.values.sorted { $0.name < $1.name } }
        let described: [JSONValue] = all.map { m in
            var entry: JSONValue = [
                "name": .string(m.name),
                "summary": .string(m.summary),
                "paramStructure": .string(m.paramStructure),
                "params": .array(
                    m.params.properties.map { p in
                        ["name": .string(p.name), "required": .bool(p.required), "schema": p.schema]
                    }),
                "result": ["name": .string(m.name + ".result"), "schema": m.result.schema],
            ]
            let problems = m.params.problems + m.result.problems
            if !problems.isEmpty {
                entry["description"] = .string("schema may be incomplete: " + problems.joined(separator: "; "))
            }
            return entry
        }
        return [
            "openrpc": "1.2.6",
            "info": ["title": .string(title), "version": .string(version)],
            "methods": .array(described),
        ]
    }

    // MARK: dispatch

    /// Calls one method directly (no JSON-RPC envelope).
    /// - Throws: ``RPCError`` exactly as it would be sent to a client.
    public func call(_ name: String, params: JSONValue?, context: RequestContext) async throws -> JSONValue {
        var record = RPCCallRecord(method: name, isNotification: false, duration: 0)
        return try await invoke(name, params: params, context: context, record: &record)
    }

    private func invoke(
        _ name: String, params: JSONValue?, context: RequestContext, record: inout RPCCallRecord
    ) async throws -> JSONValue {
        guard let method = methods.withLock({ $0[name] }) else {
            throw RPCError.methodNotFound(name)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { record.duration = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        do {
            return try await method.handler(params, context)
        } catch let error as RPCError {
            throw error
        } catch let error as MethodResultEncodingFailure {
            record.internalFailure = "result could not be encoded: \(error.underlying)"
            throw RPCError.internalError("method \(name) failed")
        } catch is CancellationError {
            record.internalFailure = "cancelled"
            throw RPCError.internalError("method \(name) was cancelled")
        } catch {
            record.internalFailure = "\(type(of: error)): \(error)"
            throw RPCError.internalError("method \(name) failed")
        }
    }

    /// Handles one JSON-RPC message given as UTF-8 JSON text: a request, a notification
    /// or a batch. Returns the serialized response, or nil when nothing must be sent
    /// (notifications, all-notification batches).
    public func handle<Bytes: Collection>(
        message bytes: Bytes, context: RequestContext,
        onCall: (@Sendable (RPCCallRecord) -> Void)? = nil
    ) async -> [UInt8]? where Bytes.Element == UInt8 {
        let parsed: JSONValue
        do {
            parsed = try JSONValue(parsing: bytes)
        } catch {
            let reason = (error as? JSONParseError)?.description ?? "invalid JSON"
            onCall?(RPCCallRecord(method: nil, isNotification: false, errorCode: -32700, duration: 0))
            return Self.errorResponse(id: .null, .parseError(reason: reason)).serialized()
        }
        return await handle(message: parsed, context: context, onCall: onCall)?.serialized()
    }

    /// Handles one already-parsed JSON-RPC message. Returns the response value, or nil.
    public func handle(
        message: JSONValue, context: RequestContext,
        onCall: (@Sendable (RPCCallRecord) -> Void)? = nil
    ) async -> JSONValue? {
        switch message {
        case .array(let elements):
            if elements.isEmpty {
                onCall?(RPCCallRecord(method: nil, isNotification: false, errorCode: -32600, duration: 0))
                return Self.errorResponse(id: .null, .invalidRequest("empty batch"))
            }
            var responses: [JSONValue] = []
            for element in elements {
                if let response = await handleSingle(element, context: context, onCall: onCall) {
                    responses.append(response)
                }
            }
            if responses.isEmpty { return Optional<JSONValue>.none }  // not `nil`: JSONValue is nil-literal convertible
            return .array(responses)
        default:
            return await handleSingle(message, context: context, onCall: onCall)
        }
    }

    private func handleSingle(
        _ request: JSONValue, context: RequestContext, onCall: (@Sendable (RPCCallRecord) -> Void)?
    ) async -> JSONValue? {
        func invalid(_ id: JSONValue, _ reason: String) -> JSONValue {
            onCall?(RPCCallRecord(method: nil, isNotification: false, errorCode: -32600, duration: 0))
            return Self.errorResponse(id: id, .invalidRequest(reason))
        }
        guard case .object(let members) = request else {
            return invalid(.null, "a request must be an object, got \(request.typeDescription)")
        }
        var id: JSONValue = .null
        let isNotification = members["id"] == nil
        if let given = members["id"] {
            switch given {
            case .string, .int, .double, .null: id = given
            default: return invalid(.null, "id must be a string, a number or null")
            }
        }
        guard members["jsonrpc"] == .string("2.0") else {
            return invalid(id, "jsonrpc must be \"2.0\"")
        }
        guard case .string(let method)? = members["method"] else {
            return invalid(id, "method must be a string")
        }
        let params = members["params"]
        switch params {
        case nil, .object?, .array?, .null?: break
        default: return invalid(id, "params must be an object or an array")
        }
        var record = RPCCallRecord(method: method, isNotification: isNotification, duration: 0)
        do {
            let result = try await invoke(method, params: params, context: context, record: &record)
            onCall?(record)
            if isNotification { return Optional<JSONValue>.none }
            return Self.resultResponse(id: id, result)
        } catch {
            let rpcError = error as? RPCError ?? .internalError("method \(method) failed")
            record.errorCode = rpcError.code
            onCall?(record)
            if isNotification { return Optional<JSONValue>.none }
            return Self.errorResponse(id: id, rpcError)
        }
    }

    // MARK: envelopes

    /// `{"jsonrpc":"2.0","result":…,"id":…}`
    public static func resultResponse(id: JSONValue, _ result: JSONValue) -> JSONValue {
        ["jsonrpc": "2.0", "result": result, "id": id]
    }

    /// `{"jsonrpc":"2.0","error":{…},"id":…}`
    public static func errorResponse(id: JSONValue, _ error: RPCError) -> JSONValue {
        var object: JSONValue = ["code": .int(Int64(error.code)), "message": .string(error.message)]
        if let data = error.data { object["data"] = data }
        return ["jsonrpc": "2.0", "error": object, "id": id]
    }
}

struct MethodResultEncodingFailure: Error {
    let method: String
    let underlying: Error
}

/// The first key of `input` (a path like "ipsecPairingA.dhgroup" or "items[2].x") that the
/// decoded-and-re-encoded params do not have — a field the params type does not know.
/// Keys whose value is null are ignored (an optional set to null is simply absent).
func unknownField(_ input: JSONValue, _ known: JSONValue, path: String) -> String? {
    switch (input, known) {
    case (.object(let i), .object(let k)):
        for key in i.keys.sorted() {
            guard let value = i[key], !value.isNull else { continue }
            let p = path.isEmpty ? key : path + "." + key
            guard let kv = k[key] else { return p }
            if let deeper = unknownField(value, kv, path: p) { return deeper }
        }
        return nil
    case (.array(let i), .array(let k)) where i.count == k.count:
        for (n, pair) in zip(i, k).enumerated() {
            if let deeper = unknownField(pair.0, pair.1, path: "\(path)[\(n)]") { return deeper }
        }
        return nil
    default:
        return nil
    }
}
