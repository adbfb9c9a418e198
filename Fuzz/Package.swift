// swift-tools-version:6.1
// The fuzz targets live in their own package so that the product never builds with the sanitizers. Build and run
// them with `make fuzz` (scripts/fuzz), which passes the sanitizer and coverage flags to every module.
import PackageDescription

let package = Package(
    name: "tickplant-fuzz",
    dependencies: [
        .package(name: "tickplant", path: ".."),
    ],
    targets: [
        // The declaration of libFuzzer's driver, which our own main calls.
        .target(name: "CFuzzerDriver", path: "Sources/CFuzzerDriver"),
        .executableTarget(
            name: "tickfuzz",
            dependencies: [
                "CFuzzerDriver",
                .product(name: "MarketData", package: "tickplant"),
                .product(name: "FeedHandler", package: "tickplant"),
                .product(name: "TickerPlant", package: "tickplant"),
                .product(name: "EdgeServer", package: "tickplant"),
            ],
            path: "Sources/tickfuzz",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
