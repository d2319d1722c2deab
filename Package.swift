// swift-tools-version:6.2
// pbs-standby: keeps a Proxmox VE standby node hot from Proxmox Backup Server backups.
import PackageDescription

let package = Package(
    name: "pbs-standby",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pbs-standby", targets: ["pbs-standby"]),
        .executable(name: "http-bench-server", targets: ["HTTPBenchServer"]),
        .executable(name: "rpo-bench", targets: ["RPOBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // The version and the git revision (written by a build-tool plugin before each build).
        .target(name: "BuildInfo", plugins: ["RevisionPlugin"]),
        .plugin(name: "RevisionPlugin", capability: .buildTool()),
        // C: libmicrohttpd, with fixed-arity wrappers of the variadic MHD_start_daemon. Nothing else.
        .systemLibrary(
            name: "CMicroHTTPD", pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]),
        // C: libcrypt's crypt_rn (bcrypt checks for basic auth). Only MicroHTTP imports it.
        .systemLibrary(name: "CCrypt", providers: [.apt(["libcrypt-dev"])]),
        .systemLibrary(name: "CMalloc"),
        // Strict YAML reading shared by the web config and the service config: key paths, lines,
        // unknown keys rejected, durations.
        .target(
            name: "ConfigSupport",
            dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(
            name: "MicroHTTP",
            dependencies: [
                "CMicroHTTPD", "CCrypt", "ConfigSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ]),
        // PVE's value types (volids, UPIDs, guests, tasks, errors, backed-up configs, permission
        // maps): no transport, no NIO. The pure core depends on these only.
        .target(name: "ProxmoxModel"),
        .target(
            name: "ProxmoxAPI",
            dependencies: [
                "ProxmoxModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "ProxmoxSimulator",
            dependencies: [
                "ProxmoxAPI", "MicroHTTP", "PBSDatastore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "StandbyCore",
            dependencies: [
                "ProxmoxModel", "ConfigSupport",
                .product(name: "Yams", package: "Yams"),
            ]),
        .target(
            name: "StandbyStore",
            dependencies: [
                "StandbyCore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        .target(
            name: "StandbyService",
            dependencies: [
                "StandbyCore", "StandbyStore", "ProxmoxAPI", "MicroHTTP", "BuildInfo", "PBSDatastore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        // Simulation scaffolding kept out of the service: engine clocks over the simulator's
        // clocks, the discrete-event driver of the RPO benchmark and soak test, the demo config.
        .target(
            name: "StandbySimulation",
            dependencies: ["StandbyService", "StandbyCore", "ProxmoxSimulator"]),
        // C: libzstd's decompression API (PBS chunk blobs). Only PBSDatastore imports it.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // The PBS on-disk datastore format (blobs, .fidx, chunk store, manifest) and delta apply.
        .target(
            name: "PBSDatastore",
            dependencies: ["CZstd", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "PBSDatastoreTests", dependencies: ["PBSDatastore"]),
        .executableTarget(
            name: "pbs-standby",
            dependencies: [
                "StandbyService", "StandbySimulation", "StandbyCore", "StandbyStore", "ProxmoxAPI", "ProxmoxSimulator", "MicroHTTP", "BuildInfo", "CMalloc",
                "PBSDatastore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "HTTPBenchServer",
            dependencies: ["MicroHTTP", "StandbyService", .product(name: "Logging", package: "swift-log"), .product(name: "Prometheus", package: "swift-prometheus")],
            path: "Benchmarks/HTTPBenchServer"),
        .executableTarget(
            name: "RPOBench",
            dependencies: ["StandbyService", "StandbySimulation", "StandbyCore", "StandbyStore", "ProxmoxSimulator", "ProxmoxAPI",
                           .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/RPOBench"),
        .testTarget(
            name: "MicroHTTPTests",
            dependencies: [
                "MicroHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]),
        .testTarget(
            name: "ProxmoxAPITests",
            dependencies: ["ProxmoxAPI", "ProxmoxSimulator", "MicroHTTP"]),
        .testTarget(
            name: "StandbyCoreTests",
            dependencies: ["StandbyCore", "ProxmoxModel"]),
        .testTarget(
            name: "StandbyStoreTests",
            dependencies: ["StandbyStore", "StandbyCore", .product(name: "GRDB", package: "GRDB.swift")]),
        // Test helpers (the `Rig`: engine + in-process simulator on virtual time).
        .target(
            name: "TestSupport",
            dependencies: ["StandbyService", "StandbySimulation", "StandbyStore", "StandbyCore", "ProxmoxSimulator", "ProxmoxAPI",
                           .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
        .testTarget(
            name: "StandbyServiceTests",
            dependencies: ["TestSupport", "StandbyService", "StandbySimulation", "StandbyStore", "StandbyCore", "ProxmoxSimulator", "ProxmoxAPI", "MicroHTTP", "PBSDatastore",
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "PropertyBased", package: "swift-property-based"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["StandbyCore", "ProxmoxAPI", "ProxmoxSimulator", "MicroHTTP", "ConfigSupport"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: []),
    ],
    swiftLanguageModes: [.v6]
)
