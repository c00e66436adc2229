// swift-tools-version:6.1
//
// Warren — a network virtualization agent for Linux.
// Targets and what each may import are fixed by Docs/architecture.md (from DESIGN.md):
// WarrenCore is pure; only WarrenLinux and the C targets touch the kernel.
import PackageDescription

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "WarrenCore", targets: ["WarrenCore"]),
        .library(name: "WarrenRPC", targets: ["WarrenRPC"]),
        .library(name: "WarrenLinux", targets: ["WarrenLinux"]),
        .library(name: "WarrenAgent", targets: ["WarrenAgent"]),
        .executable(name: "warren-agent", targets: ["warren-agent"]),
        .executable(name: "warrenctl", targets: ["warrenctl"]),
        .executable(name: "warren-bench", targets: ["WarrenBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // MARK: pure core
        .target(name: "WarrenCore"),

        // MARK: C boundaries
        .systemLibrary(
            name: "CNetlink",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "CWarrenShim"),

        // MARK: Linux, datapath, RPC, agent
        .target(
            name: "WarrenLinux",
            dependencies: [
                "CNetlink", "COpenSSL", "CWarrenShim",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "WarrenDatapath",
            dependencies: ["WarrenCore", "WarrenLinux", "CWarrenShim"]
        ),
        .target(
            name: "WarrenRPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "WarrenAgent",
            dependencies: [
                "WarrenCore", "WarrenLinux", "WarrenDatapath", "WarrenRPC",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "warren-agent",
            dependencies: [
                "WarrenAgent", "ExamplePlugin", "DynamicVPN", "StaticVPN",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "warrenctl",
            dependencies: [
                "WarrenRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: plugins
        .target(name: "WarrenVici", path: "Plugins/Vici"),
        .target(name: "ExamplePlugin", dependencies: ["WarrenAgent"], path: "Plugins/Example"),
        .target(name: "IPsec", dependencies: ["WarrenAgent", "WarrenLinux", "WarrenVici"], path: "Plugins/IPsec"),
        .target(name: "DynamicVPN", dependencies: ["IPsec", "WarrenAgent"], path: "Plugins/DynamicVPN"),
        .target(name: "StaticVPN", dependencies: ["IPsec", "WarrenAgent"], path: "Plugins/StaticVPN"),

        // MARK: benchmarks
        .target(name: "CMallocCounter", path: "Benchmarks/CMallocCounter"),
        .executableTarget(
            name: "WarrenBench",
            dependencies: ["WarrenCore", "WarrenRPC", "WarrenLinux", "CMallocCounter"],
            path: "Benchmarks/WarrenBench"
        ),

        // MARK: tests
        .testTarget(name: "WarrenCoreTests", dependencies: ["WarrenCore"]),
        .testTarget(name: "WarrenRPCTests", dependencies: ["WarrenRPC"]),
        .testTarget(name: "WarrenLinuxTests", dependencies: ["WarrenLinux"]),
        .testTarget(name: "WarrenDatapathTests", dependencies: ["WarrenDatapath"]),
        .testTarget(name: "ViciTests", dependencies: ["WarrenVici"]),
        .testTarget(name: "WarrenAgentTests", dependencies: ["WarrenAgent", "ExamplePlugin"]),
        .testTarget(name: "PluginTests", dependencies: ["IPsec", "DynamicVPN", "StaticVPN", "WarrenAgent"]),
    ]
)
