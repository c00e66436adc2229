// Subscriptions — event topics and the per-connection set of subscribed topics.
//
// What: a topic is a dotted name ("vpn.dynamic.tunnel"); a subscription to "vpn.dynamic"
// receives "vpn.dynamic" and every "vpn.dynamic.*" topic; "*" receives everything.
// `SubscriptionSet` is the handle a Unix-socket connection exposes through
// `RequestContext.subscriptions`; the server reads it when publishing.
// Invariants: only valid topic patterns are ever stored (validated by `subscribe`);
// the set is small (a handful of patterns), so matching is a linear scan.
// Threading: `SubscriptionSet` is internally locked; safe from any thread/task.

/// Topic syntax and matching rules.
public enum EventTopic {
    /// The pattern that matches every topic.
    public static let wildcard = "*"

    /// Whether `pattern` is acceptable for subscribe: "*" or dot-separated segments of
    /// letters, digits, "-" and "_" (at most 200 characters).
    public static func isValidPattern(_ pattern: String) -> Bool {
        if pattern == wildcard { return true }
        return isValidTopic(pattern)
    }

    /// Whether `topic` is a valid published topic name.
    public static func isValidTopic(_ topic: String) -> Bool {
        guard !topic.isEmpty, topic.utf8.count <= 200 else { return false }
        for segment in topic.split(separator: ".", omittingEmptySubsequences: false) {
            guard !segment.isEmpty else { return false }
            for b in segment.utf8 {
                switch b {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                    continue
                default:
                    return false
                }
            }
        }
        return true
    }

    /// Whether a subscription to `pattern` receives events published on `topic`.
    public static func pattern(_ pattern: String, matches topic: String) -> Bool {
        if pattern == wildcard || pattern == topic { return true }
        let p = pattern.utf8
        let t = topic.utf8
        return t.count > p.count && t.starts(with: p) && t[t.index(t.startIndex, offsetBy: p.count)] == UInt8(ascii: ".")
    }
}

/// The topics one connection is subscribed to.
public final class SubscriptionSet: Sendable {
    private let state = LockedState<Set<String>>([])

    /// An empty set.
    public init() {}

    /// The subscribed patterns, sorted.
    public var topics: [String] {
        state.withLock { $0.sorted() }
    }

    /// Adds patterns and returns all subscribed patterns (sorted).
    /// - Throws: ``RPCError/invalidParams(field:reason:)`` naming the first invalid pattern
    ///   ("topics[i]"); nothing is added in that case.
    @discardableResult
    public func subscribe(_ patterns: [String]) throws -> [String] {
        for (i, p) in patterns.enumerated() where !EventTopic.isValidPattern(p) {
            throw RPCError.invalidParams(
                field: "topics[\(i)]",
                reason: "not a topic: use \"*\" or dot-separated names of letters, digits, '-' and '_'")
        }
        return state.withLock {
            $0.formUnion(patterns)
            return $0.sorted()
        }
    }

    /// Removes patterns (unknown ones are ignored) and returns the remaining ones (sorted).
    @discardableResult
    public func unsubscribe(_ patterns: [String]) -> [String] {
        state.withLock {
            $0.subtract(patterns)
            return $0.sorted()
        }
    }

    /// Whether an event on `topic` should be delivered to this connection.
    public func wants(_ topic: String) -> Bool {
        state.withLock { set in
            set.contains { EventTopic.pattern($0, matches: topic) }
        }
    }

    /// Whether at least one pattern is subscribed.
    public var isEmpty: Bool {
        state.withLock { $0.isEmpty }
    }
}
