import CKernels
import Foundation

/// Process-level set-up: OpenBLAS kernel selection and thread counts.
public enum Runtime {
    /// The OpenBLAS core type this CPU should run, when Debian's OpenBLAS 0.3.21 would guess wrong
    /// (it reports AVX-512 AMD and newer Intel parts as "Prescott" and runs its slowest kernels).
    /// Follows the SIMD level in use, so ZOO_SIMD=avx2 on an AVX-512 machine runs OpenBLAS's
    /// AVX2 (Haswell) kernels too.
    public static func preferredCoreType() -> String? {
        switch zk_simd_level() {
        case Int32(ZK_SIMD_AVX512): return "SkylakeX"
        case Int32(ZK_SIMD_AVX2): return "Haswell"
        default: return nil
        }
    }

    /// ZOO_SIMD, when set, must name a level; one above this CPU's is capped with a warning.
    public static func checkSIMDSetting() throws {
        guard let want = ProcessInfo.processInfo.environment["ZOO_SIMD"] else { return }
        let level = zk_simd_parse(want)
        guard level >= 0 else { throw ZooError.usage("ZOO_SIMD=\(want): expected generic, avx2 or avx512") }
        if level > zk_simd_max() {
            FileHandle.standardError.write(Data("zoo: ZOO_SIMD=\(want), but this CPU runs at most \(simdName(zk_simd_max())): using that\n".utf8))
        }
    }

    public static func simdName(_ level: Int32) -> String { String(cString: zk_simd_name(level)) }

    /// The kernels in use: "avx512 (int8 VNNI)".
    public static var kernels: String { "\(simdName(zk_simd_level())) (int8 \(String(cString: zk_int8_name(zk_int8_kernel()))))" }

    /// Settings read once when OpenBLAS loads, i.e. before `main`: OPENBLAS_CORETYPE, the fast
    /// kernels for this CPU (Debian's build guesses "Prescott" here). A value the user set is kept.
    /// (OpenBLAS runs single-threaded inside zoo's one OpenMP pool, so no thread settings are needed.)
    public static func wantedEnvironment(_ env: [String: String]) -> [String: String] {
        var add: [String: String] = [:]
        if env["OPENBLAS_CORETYPE"] == nil, let core = preferredCoreType() { add["OPENBLAS_CORETYPE"] = core }
        return add
    }

    /// Sets `wantedEnvironment` and re-executes this program once, so the libraries load with it.
    public static func ensureFastBLAS() {
        let env = ProcessInfo.processInfo.environment
        let add = wantedEnvironment(env)
        guard !add.isEmpty, env["ZOO_NO_REEXEC"] == nil else { return }
        for (k, v) in add { setenv(k, v, 1) }
        setenv("ZOO_NO_REEXEC", "1", 1)
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // execv only returns on failure: carry on with whatever OpenBLAS picked.
    }

    /// "AMD EPYC (AVX-512 + VNNI), 2 cores, kernels avx512 (int8 VNNI)": the model name in
    /// /proc/cpuinfo, what the CPU has and the kernels in use (what every speed measurement names).
    public static var cpuName: String {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let name = info.split(separator: "\n").first { $0.hasPrefix("model name") }.map { $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        let simd = zk_cpu_has_avx512() != 0 ? (zk_cpu_has_vnni() != 0 ? "AVX-512 + VNNI" : "AVX-512") : zk_cpu_has_avx2() != 0 ? "AVX2" : "SSE"
        return "\(name) (\(simd)), \(ProcessInfo.processInfo.activeProcessorCount) cores, kernels \(kernels)"
    }

    /// A zoo started by another with ZOO_PARENT=<its pid> (zoo table's steps) dies with it, so a
    /// killed `zoo table` leaves no step running on in the background.
    public static func dieWithParent() {
        guard let s = ProcessInfo.processInfo.environment["ZOO_PARENT"], let parent = Int32(s) else { return }
        if zk_die_with_parent(parent) == 0 { exit(1) }
    }

    /// Large buffers (weights, activations) get their own mappings and go back to the system when
    /// freed, instead of fragmenting the heap (glibc would otherwise raise its mmap threshold after
    /// the first large free and keep later ones on the heap).
    public static func configureAllocator() {
        zk_configure_allocator()
    }

    public static var blasCoreType: String { String(cString: zk_blas_corename()) }

    public static func setThreads(_ n: Int?) {
        zk_set_threads(Int32(n ?? defaultThreads))
    }

    /// This process's peak resident memory (VmHWM), in bytes; 0 where /proc is not available.
    public static var peakRSS: Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    public static var threads: Int { Int(zk_get_threads()) }

    public static var defaultThreads: Int {
        if let s = ProcessInfo.processInfo.environment["ZOO_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }
}
