// warren-agent: the daemon. This file is the composition: which plugins this binary
// carries. A third party builds its own agent the same way (Docs/plugins.md).

import ArgumentParser
import DynamicVPN
import ExamplePlugin
import Foundation
import Logging
import StaticVPN
import WarrenAgent

@main
struct WarrenAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-agent",
        abstract: "Warren network virtualization agent.",
        discussion: "Runs the virtual topology, the datapath, the JSON-RPC API and plugins. Works with no configuration file: the store and the socket live in the state directory.")

    @Option(name: .customLong("state-dir"), help: "State directory (store, socket, lock, plugin state); default /var/lib/warren, or the configuration's stateDirectory.")
    var stateDirectory: String?

    @Option(name: .customLong("config"), help: "JSON configuration file (see Docs/operations.md).")
    var config: String?

    @Option(name: .customLong("log-level"), help: "Overrides the configuration's logLevel.")
    var logLevel: String?

    /// The plugins compiled into this agent.
    static let plugins: [any WarrenPlugin.Type] = [LabelsPlugin.self, DynamicVPNPlugin.self, StaticVPNPlugin.self]

    func run() async throws {
        var configuration: AgentConfiguration
        do {
            configuration = try config.map { try AgentConfiguration.load(path: $0, stateDirectory: stateDirectory) }
                ?? AgentConfiguration(stateDirectory: stateDirectory ?? "/var/lib/warren")
        } catch {
            FileHandle.standardError.write(Data("warren-agent: \(error)\n".utf8))
            throw ExitCode(78)
        }
        if let l = logLevel { configuration.logLevel = l }
        let level = Logger.Level(rawValue: configuration.logLevel ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "warren")
        do {
            try await Agent(configuration: configuration, logger: logger).run(plugins: Self.plugins)
        } catch {
            logger.critical("warren-agent cannot run: \(error)")
            throw ExitCode(1)
        }
    }
}
