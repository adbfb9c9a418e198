// swift-tools-version:6.1
// The benchmarks live in their own package so that the product never builds ordo-one/benchmark.
// Run them with `make bench` (or `swift package --disable-sandbox benchmark` here).
import PackageDescription

let package = Package(
    name: "tickplant-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "tickplant", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The market the per-tick benchmarks share.
        .target(
            name: "BenchmarkMarkets",
            dependencies: [.product(name: "MarketData", package: "tickplant")],
            path: "Benchmarks/BenchmarkMarkets"
        ),
        .executableTarget(
            name: "FeedBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FeedHandler", package: "tickplant"),
                .product(name: "MarketData", package: "tickplant"),
            ],
            path: "Benchmarks/FeedBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "PlantBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkMarkets",
                .product(name: "TickerPlant", package: "tickplant"),
                .product(name: "MarketData", package: "tickplant"),
                .product(name: "ZeroMQ", package: "tickplant"),
            ],
            path: "Benchmarks/PlantBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "EdgeBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkMarkets",
                .product(name: "EdgeServer", package: "tickplant"),
            ],
            path: "Benchmarks/EdgeBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
