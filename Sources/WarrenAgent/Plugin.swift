// The plugin host's contract: what a plugin is and what it is given.
//
// A plugin is a Swift type conforming to `WarrenPlugin`: it has a name (which is also
// its JSON-RPC method prefix and store namespace), is constructed with a
// `PluginContext`, registers its methods, and is a `Service` run by the agent's
// ServiceGroup (its `run()` lasts until graceful shutdown). Plugins are compiled in: an
// agent binary is assembled by passing the plugin types to `Agent.run` (see
// Sources/warren-agent/WarrenAgentCommand.swift and Docs/plugins.md).
//
// Plugins reach the rest of the agent only through the context: the `Network` actor
// (topology mutations, validated and persisted like API calls), their own store
// namespace, the process supervisor, a logger, the event bus (pushed to subscribers),
// datapath statistics and their own state directory.

import Foundation
import Logging
import ServiceLifecycle
import WarrenCore
import WarrenLinux
import WarrenRPC

public protocol WarrenPlugin: Service {
    /// The plugin's name: its method prefix ("vpn.dynamic" → "vpn.dynamic.create"), its
    /// store namespace, its event topic and its key in the agent configuration.
    static var name: String { get }
    /// One line for `agent.status` and `rpc.discover`.
    static var summary: String { get }
    /// Builds the plugin. Heavy work (adopting daemons, reconciling) belongs in `run()`.
    init(context: PluginContext) async throws
    /// Registers the plugin's JSON-RPC methods (names are prefixed automatically).
    func registerMethods(_ methods: PluginMethods)
    /// A short state for `agent.status` ("2 VPNs, 4/4 tunnels up").
    func status() async -> String
}

public struct PluginContext: Sendable {
    public let name: String
    /// The virtual topology: plugins create ports, bind them and inject routes through it.
    public let network: Network
    /// The plugin's own store namespace.
    public let store: PluginStore
    /// Starts and watches the daemons a plugin runs (charon, BIRD); adopts survivors of
    /// an agent restart.
    public let processes: ProcessSupervisor
    public let logger: Logger
    /// Publishes notifications to subscribers, under the plugin's topic.
    public let events: PluginEvents
    /// The plugin's section of the agent configuration (`pluginSettings.<name>`), or {}.
    public let configuration: JSONValue
    /// Every section of `pluginSettings`, for settings plugins share (e.g. "ipsec").
    public let sharedConfiguration: [String: JSONValue]
    /// A directory of the plugin's own (mode 0700), kept across restarts.
    public let stateDirectory: String
    /// Datapath counters and learned state (nil when the datapath is disabled).
    public let datapath: (any DatapathAccess)?

    public init(name: String, network: Network, store: PluginStore, processes: ProcessSupervisor, logger: Logger,
                events: PluginEvents, configuration: JSONValue, sharedConfiguration: [String: JSONValue] = [:],
                stateDirectory: String, datapath: (any DatapathAccess)?) {
        self.name = name
        self.network = network
        self.store = store
        self.processes = processes
        self.logger = logger
        self.events = events
        self.configuration = configuration
        self.sharedConfiguration = sharedConfiguration
        self.stateDirectory = stateDirectory
        self.datapath = datapath
    }
}

/// Publishes events under a plugin's topic: `publish(data, subtopic: "state")` from
/// plugin "vpn.dynamic" reaches subscribers of "vpn.dynamic" and "vpn.dynamic.state".
public struct PluginEvents: Sendable {
    let bus: EventBus
    public let topic: String

    public init(bus: EventBus, topic: String) {
        self.bus = bus
        self.topic = topic
    }

    public func publish(_ data: JSONValue, subtopic: String? = nil) {
        bus.publish(topic: subtopic.map { topic + "." + $0 } ?? topic, data: data)
    }
}

/// Registers a plugin's methods under its prefix.
public struct PluginMethods: Sendable {
    let registry: MethodRegistry
    public let prefix: String

    public init(registry: MethodRegistry, prefix: String) {
        self.registry = registry
        self.prefix = prefix
    }

    /// Registers `<prefix>.<verb>`.
    public func register<P: Codable & Sendable, R: Codable & Sendable>(
        _ verb: String, summary: String, params: P.Type, result: R.Type,
        handler: @escaping @Sendable (P, RequestContext) async throws -> R
    ) {
        registry.register(prefix + "." + verb, summary: summary, params: params, result: result, handler: handler)
    }
}
