// Agent: assembles and runs warren-agent — lock, store, datapath, network, methods,
// plugins, RPC server and metrics — as services of one ServiceGroup.
//
// Startup order: lock the state directory (refuse if another agent holds it) → open the
// store (refuse if corrupt or newer) → start the datapath thread → load the topology
// into the Network actor (which pushes it to the datapath) → register core and plugin
// methods → bind the RPC listeners → run services. SIGTERM/SIGINT trigger a graceful
// shutdown: the listeners stop, plugins finish, the datapath stops, plugin daemons are
// left running for the next agent to adopt (unless configured otherwise).

import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import WarrenCore
import WarrenDatapath
import WarrenLinux
import WarrenRPC

public enum WarrenVersion {
    public static let string = "0.1.0"
}

public struct PluginStatus: Codable, Sendable {
    public var name: String
    public var summary: String
    public var state: String
}

public struct AgentStatus: Codable, Sendable {
    public var version: String
    public var uptimeSeconds: Double
    public var stateDirectory: String
    public var socket: String
    public var httpListener: String?
    public var topologyVersion: UInt64
    public var datapath: DatapathStatus
    public var plugins: [PluginStatus]

    public struct DatapathStatus: Codable, Sendable {
        public var enabled: Bool
        public var running: Bool
        public var flows: Int
        public var ports: [PortStatus]
    }
}

public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    let logger: Logger

    public init(configuration: AgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs the agent with `plugins` (filtered by the configuration) until SIGTERM/SIGINT.
    public func run(plugins available: [any WarrenPlugin.Type]) async throws {
        let c = configuration
        let token = try c.validate()
        let dir = c.stateDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let lock = try FileLock.tryLock(path: dir + "/agent.lock")
        defer { lock.unlock() }

        let store = try Store(path: dir + "/warren.db", synchronous: c.store?.synchronous ?? .full)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let events = EventBus()

        // Datapath.
        var dpConfig = DatapathConfiguration()
        if let f = c.flows {
            if let m = f.maxFlows { dpConfig.flowTable.maxFlows = m }
            if let t = f.idleTimeoutSeconds { dpConfig.flowTable.idleTimeout = UInt64(t * 1e9) }
            if let e = f.exactMatchEntries { dpConfig.flowTable.exactMatchEntries = e }
        }
        if let b = c.datapath?.batchSize { dpConfig.batchSize = max(1, min(1024, b)) }
        if let r = c.datapath?.receiveRing { dpConfig.receiveRing = r }
        if let n = c.datapath?.receiveRingSlots { dpConfig.receiveRingSlots = n }
        let receiveRing = dpConfig.receiveRing, slotSize = dpConfig.slotSize, ringSlots = dpConfig.receiveRingSlots
        let datapathEnabled = c.datapath?.enabled ?? true
        let datapath: Datapath? = datapathEnabled ? Datapath(configuration: dpConfig, ioFactory: { try SocketPacketIO(interface: $0, receiveRing: receiveRing, maxFrame: slotSize, ringSlots: ringSlots) }) : nil
        datapath?.start()

        let network = try Network(store: store, sink: datapath, events: events, logger: logger)
        let methods = MethodRegistry()
        CoreMethods.register(on: methods, network: network, datapath: datapath)

        // Plugins.
        let enabled = c.plugins.map(Set.init)
        if let names = enabled {
            let known = Set(available.map { $0.name })
            if let unknown = names.first(where: { !known.contains($0) }) {
                throw ConfigurationError("plugins: no compiled-in plugin named \"\(unknown)\" (available: \(known.sorted().joined(separator: ", ")))")
            }
        }
        let processes = ProcessSupervisor(stateDirectory: dir + "/processes") { [logger] line in
            logger.info("\(line)", metadata: ["component": "supervisor"])
        }
        var plugins: [any WarrenPlugin] = []
        for type in available where enabled?.contains(type.name) ?? true {
            let pdir = dir + "/plugins/" + type.name
            try FileManager.default.createDirectory(atPath: pdir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var plog = logger
            plog[metadataKey: "plugin"] = .string(type.name)
            let context = PluginContext(name: type.name, network: network, store: PluginStore(store: store, plugin: type.name),
                                        processes: processes, logger: plog, events: PluginEvents(bus: events, topic: type.name),
                                        configuration: c.pluginSettings?[type.name] ?? .object([:]),
                                        sharedConfiguration: c.pluginSettings ?? [:], stateDirectory: pdir,
                                        datapath: datapath)
            let plugin = try await type.init(context: context)
            plugin.registerMethods(PluginMethods(registry: methods, prefix: type.name))
            plugins.append(plugin)
            logger.info("plugin \(type.name) loaded")
        }

        // Agent-level methods.
        let started = Date()
        let pluginList = plugins
        let httpListen = c.http?.listen
        methods.register("agent.status", summary: "Version, uptime, plugins and their state, datapath ports.",
                         params: EmptyParams.self, result: AgentStatus.self) { _, _ in
            let stats = await datapath?.currentStatistics()
            var ps: [PluginStatus] = []
            for p in pluginList { ps.append(PluginStatus(name: type(of: p).name, summary: type(of: p).summary, state: await p.status())) }
            return AgentStatus(version: WarrenVersion.string, uptimeSeconds: Date().timeIntervalSince(started),
                               stateDirectory: dir, socket: c.socketPath, httpListener: httpListen,
                               topologyVersion: await network.topology.version,
                               datapath: .init(enabled: datapath != nil, running: stats?.running ?? false,
                                               flows: stats?.flows ?? 0, ports: stats?.ports ?? []),
                               plugins: ps)
        }
        methods.register("agent.stats", summary: "Flow engine counters (same as flow.stats) for monitoring.",
                         params: EmptyParams.self, result: FlowStatsView.self) { _, _ in
            guard let dp = datapath else { throw RPCError.unavailable(reason: "the datapath is disabled") }
            return FlowStatsView(await dp.currentStatistics())
        }

        // RPC server.
        var http: (host: String, port: Int)? = nil
        if let l = c.http?.listen {
            let parts = l.split(separator: ":")
            http = (String(parts[0]), Int(parts[1])!)
        }
        let exporter = MetricsExporter(registry: registry, datapath: datapath, network: network)
        var serverConfig = RPCServer.Configuration(unixSocketPath: c.socketPath)
        serverConfig.http = http
        serverConfig.bearerToken = token
        serverConfig.maxRequestBytes = c.maxRequestBytes ?? 1 << 20
        serverConfig.metrics = { await exporter.render() }
        let rpcLogger = logger
        let server = RPCServer(registry: methods, configuration: serverConfig) { level, message in
            switch level {
            case .debug: rpcLogger.debug("\(message)", metadata: ["component": "rpc"])
            case .info: rpcLogger.info("\(message)", metadata: ["component": "rpc"])
            default: rpcLogger.warning("\(message)", metadata: ["component": "rpc"])
            }
        }
        events.subscribe { topic, data in server.publish(topic: topic, data: data) }
        try await server.start()
        logger.info("warren-agent \(WarrenVersion.string) listening on \(c.socketPath)\(httpListen.map { " and http://\($0)" } ?? "")")

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: RPCService(server: server)),
            .init(service: PeriodicService(interval: .seconds(5)) { await exporter.update() }),
        ]
        for p in plugins { services.append(.init(service: p)) }
        var groupConfig = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfig.gracefulShutdownSignals = [.sigterm, .sigint]
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            logger.error("agent stopped on error: \(error)")
        }
        logger.info("shutting down")
        datapath?.stop()
        if c.daemons?.stopOnShutdown == true {
            await processes.stopAll()
        } else {
            await processes.detachAll()
        }
        await network.quiesce()
        try? store.close()
    }
}

/// Runs the RPC server until graceful shutdown.
struct RPCService: Service {
    let server: RPCServer
    func run() async throws {
        try? await gracefulShutdown()
        await server.shutdown()
    }
}

/// Runs `body` every `interval` until graceful shutdown.
struct PeriodicService: Service {
    let interval: Duration
    let body: @Sendable () async -> Void
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await body()
                try await Task.sleep(for: interval)
            }
        }
    }
}

/// Mirrors datapath counters into Prometheus metrics.
actor MetricsExporter {
    let registry: PrometheusCollectorRegistry
    let datapath: Datapath?
    let network: Network?
    private var counters: [String: (Prometheus.Counter, UInt64)] = [:]
    private var gauges: [String: Prometheus.Gauge] = [:]

    init(registry: PrometheusCollectorRegistry, datapath: Datapath?, network: Network? = nil) {
        self.registry = registry
        self.datapath = datapath
        self.network = network
    }

    func render() async -> String {
        await update()
        return registry.emitToString()
    }

    private func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        let key = name + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        if counters[key] == nil { counters[key] = (registry.makeCounter(name: name, labels: labels), 0) }
        let (c, last) = counters[key]!
        if value > last { c.increment(by: Int64(value - last)) }
        counters[key] = (c, max(value, last))
    }

    private func gauge(_ name: String, _ value: Double) {
        if gauges[name] == nil { gauges[name] = registry.makeGauge(name: name) }
        gauges[name]!.set(value)
    }

    func update() async {
        if let network {
            counter("warren_store_commits_total", [], await network.commits)
            counter("warren_mutations_total", [], await network.committedMutations)
        }
        guard let dp = datapath else { return }
        let s = await dp.currentStatistics()
        let f = s.flowTable
        counter("warren_flow_lookups_total", [("tier", "exact")], f.exactHits)
        counter("warren_flow_lookups_total", [("tier", "megaflow")], f.megaflowHits)
        counter("warren_flow_lookups_total", [("tier", "miss")], f.misses)
        counter("warren_flow_installs_total", [], f.installs)
        counter("warren_flow_invalidations_total", [], f.invalidations)
        counter("warren_flow_evictions_total", [], f.evictions)
        counter("warren_flow_expirations_total", [], f.expirations)
        counter("warren_simulations_total", [], s.simulations)
        counter("warren_generated_packets_total", [], s.generatedPackets)
        gauge("warren_flows", Double(s.flows))
        gauge("warren_flow_subtables", Double(s.subtables))
        gauge("warren_flow_subtables_per_hit", f.subtablesPerHit)
        gauge("warren_mac_entries", Double(s.macEntries))
        gauge("warren_arp_entries", Double(s.arpEntries))
        for (reason, n) in s.malformed { counter("warren_malformed_frames_total", [("reason", reason)], n) }
        for p in s.ports {
            let l = [("port", p.port), ("interface", p.interface)]
            counter("warren_port_rx_packets_total", l, p.counters.rxPackets)
            counter("warren_port_rx_bytes_total", l, p.counters.rxBytes)
            counter("warren_port_tx_packets_total", l, p.counters.txPackets)
            counter("warren_port_tx_bytes_total", l, p.counters.txBytes)
            counter("warren_port_rx_malformed_total", l, p.counters.rxMalformed)
            counter("warren_port_tx_dropped_total", l, p.counters.txDropped)
        }
    }
}
