// swift-tools-version:5.9
// zoo — a BERT compression model zoo. Every folder under plugins/ is one variant family and becomes
// its own module automatically; registering it with the CLI is one line in Sources/zoo/Registry.swift.
import Foundation
import PackageDescription

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let plugins = ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("plugins").path)) ?? [])
    .filter { name in
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: root.appendingPathComponent("plugins/\(name)").path, isDirectory: &isDir)
            && isDir.boolValue && !name.hasPrefix(".")
    }
    .sorted()

// omp.h ships with libomp-dev inside LLVM's versioned resource dir; find it rather than pin a version.
func ompInclude() -> String {
    let llvm = "/usr/lib"
    let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: llvm)) ?? []).filter { $0.hasPrefix("llvm-") }.sorted().reversed()
    for d in dirs {
        let clang = "\(llvm)/\(d)/lib/clang"
        for v in ((try? FileManager.default.contentsOfDirectory(atPath: clang)) ?? []).sorted().reversed() {
            let inc = "\(clang)/\(v)/include"
            if FileManager.default.fileExists(atPath: inc + "/omp.h") { return inc }
        }
    }
    return "/usr/include"
}

// OpenBLAS's headers: Debian's multiarch directory for this machine's architecture (x86-64 or
// arm64), or Homebrew's on macOS (with its libomp); see README "Other CPUs".
#if os(macOS)
let brew = FileManager.default.fileExists(atPath: "/opt/homebrew") ? "/opt/homebrew/opt" : "/usr/local/opt"
let nativeFlags = ["-Xpreprocessor", "-fopenmp", "-I", "\(brew)/libomp/include", "-I", "\(brew)/openblas/include"]
let nativeLink: [LinkerSetting] = [.unsafeFlags(["-L\(brew)/libomp/lib", "-L\(brew)/openblas/lib"]), .linkedLibrary("omp")]
#else
#if arch(arm64)
let multiarch = "aarch64-linux-gnu"
#else
let multiarch = "x86_64-linux-gnu"
#endif
let nativeFlags = ["-fopenmp", "-I", ompInclude(), "-I", "/usr/include/\(multiarch)/openblas-pthread"]
let nativeLink: [LinkerSetting] = [.linkedLibrary("omp5")]
#endif

let package = Package(
    name: "zoo",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "zoo", targets: ["zoo"]),
        .library(name: "ZooCore", targets: ["ZooCore"]),
    ],
    targets: [
        .target(
            name: "CKernels",
            path: "CKernels",
            cSettings: [
                .unsafeFlags(["-O3"] + nativeFlags),
            ],
            linkerSettings: nativeLink + [.linkedLibrary("openblas"), .linkedLibrary("m")]
        ),
        .target(name: "ZooCore", dependencies: ["CKernels"], path: "Sources/ZooCore"),
        .executableTarget(
            name: "zoo",
            dependencies: ["ZooCore"] + plugins.map { .target(name: $0) },
            path: "Sources/zoo"
        ),
        .testTarget(
            name: "ZooTests",
            dependencies: ["ZooCore", "CKernels", "zoo"] + plugins.map { .target(name: $0) },
            path: "Tests/ZooTests",
            resources: [.copy("Fixtures")]
        ),
    ] + plugins.map { .target(name: $0, dependencies: ["ZooCore", "CKernels"], path: "plugins/\($0)") }
)

// The libFuzzer harness (Tests/fuzz, README "Fuzzing") exists only when ZOO_FUZZ=1 (`make fuzz-build`),
// so `swift build` and `swift test` never see it or link libFuzzer.
if ProcessInfo.processInfo.environment["ZOO_FUZZ"] == "1" {
    package.products.append(.executable(name: "zoo-fuzz", targets: ["zoo-fuzz"]))
    package.targets.append(.executableTarget(name: "zoo-fuzz", dependencies: ["ZooCore", "QBERT"], path: "Tests/fuzz/harness"))
}
