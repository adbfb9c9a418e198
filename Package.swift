// swift-tools-version:6.1
import PackageDescription

/// plantd's per-tick state lives on one thread in one class: Swift's run-time exclusivity checks on its properties
/// (a lookup in a thread-local access set on every mutation) cost about a tenth of the plant's time per tick (perf).
/// The compile-time checks stay; the plant's loop is single-threaded by construction (SocketThread). Likewise
/// edged's fan-out: every session and loop registry is touched only on its own event loop (asserted), and the
/// checks were a few percent of the loop per delivery.
let hotPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"])]

let package = Package(
    name: "tickplant",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "feedd", targets: ["feedd"]),
        .executable(name: "plantd", targets: ["plantd"]),
        .executable(name: "edged", targets: ["edged"]),
        .executable(name: "mktctl", targets: ["mktctl"]),
        .library(name: "MarketData", targets: ["MarketData"]),
        .library(name: "ZeroMQ", targets: ["ZeroMQ"]),
        .library(name: "FeedHandler", targets: ["FeedHandler"]),
        .library(name: "TickerPlant", targets: ["TickerPlant"]),
        .library(name: "EdgeServer", targets: ["EdgeServer"]),
        .library(name: "Operations", targets: ["Operations"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // MARK: C
        // Headers live in /usr/include; pkg-config is not used because libzmq's .pc adds -isystem flags SwiftPM refuses.
        .systemLibrary(name: "CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "COpenSSL", providers: [.apt(["libssl-dev"])]),
        .target(
            name: "CTickProto",
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),
        // recvmmsg for feedd's batched UDP receive: Swift's Glibc module does not export it.
        .target(name: "CSocketBatch"),
        .target(name: "CEventPoll"),
        // CRC-32C of the plant's journal records (the SSE 4.2 instruction where there is one).
        .target(name: "CChecksum"),

        // MARK: Libraries
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        .target(
            name: "MarketData",
            dependencies: [
                "CTickProto",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(
            name: "FeedHandler",
            dependencies: [
                "MarketData", "ZeroMQ", "CSocketBatch",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TickerPlant",
            dependencies: [
                "MarketData", "ZeroMQ", "CChecksum",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPathSettings
        ),
        // Each daemon's status as Prometheus metrics (/metrics), and the control endpoint's client.
        .target(
            name: "DaemonMetrics",
            dependencies: [
                "MarketData", "ZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // HopFigures from a hop's HDR histogram (mktctl latency, edged's `latency`).
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .target(
            name: "EdgeServer",
            dependencies: [
                "MarketData", "ZeroMQ", "COpenSSL", "DaemonMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                // plantd -> edged latency (the `latency` control request).
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                // FanOutHarness: the fan-out on in-memory channels, for the allocation benchmarks.
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "Operations",
            dependencies: [
                "MarketData", "ZeroMQ", "FeedHandler", "TickerPlant", "EdgeServer", "CEventPoll", "DaemonMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // SIGHUP: a daemon reads its configuration again.
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                // mktctl latency: HDR histograms of each hop.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),

        // MARK: Executables (thin)
        .executableTarget(
            name: "feedd",
            dependencies: ["FeedHandler", "Operations", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "plantd",
            dependencies: ["TickerPlant", "Operations", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "edged",
            dependencies: ["EdgeServer", "Operations", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "mktctl",
            dependencies: ["Operations", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // MARK: Tests
        // What the tests of several targets share: plain TCP and HTTP to our servers on 127.0.0.1.
        .target(name: "TestSupport", dependencies: ["ZeroMQ"], path: "Tests/TestSupport"),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"]),
        .testTarget(name: "MarketDataTests", dependencies: ["MarketData"]),
        .testTarget(name: "FeedHandlerTests", dependencies: ["FeedHandler", "MarketData", "ZeroMQ"]),
        .testTarget(name: "TickerPlantTests", dependencies: ["TickerPlant", "MarketData", "ZeroMQ", "TestSupport"]),
        .testTarget(
            name: "EdgeServerTests",
            dependencies: ["EdgeServer", "MarketData", "TickerPlant", "ZeroMQ", "TestSupport"]),
        .testTarget(
            name: "OperationsTests", dependencies: ["Operations", "FeedHandler", "MarketData", "ZeroMQ", "EdgeServer", "TickerPlant"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["MarketData", "ZeroMQ", "Operations", "DaemonMetrics", "TestSupport"]),
    ]
)
