import CKernels
import Foundation

/// Process-level set-up: OpenBLAS kernel selection and thread counts.
public enum Runtime {
    /// The OpenBLAS core type this CPU should run, when Debian's OpenBLAS 0.3.21 would guess wrong
    /// (it reports AVX-512 AMD and newer Intel parts as "Prescott" and runs its slowest kernels).
    public static func preferredCoreType() -> String? {
        if zk_cpu_has_avx512() != 0 { return "SkylakeX" }
        if zk_cpu_has_avx2() != 0 { return "Haswell" }
        return nil
    }

    /// OpenBLAS reads OPENBLAS_CORETYPE once, when the library loads, i.e. before `main`. If the user
    /// has not set it, set it and re-execute this program once so the fast kernels are in use.
    public static func ensureFastBLAS() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["ZOO_NO_REEXEC"] == nil, let core = preferredCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("ZOO_NO_REEXEC", "1", 1)
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // execv only returns on failure: carry on with whatever OpenBLAS picked.
    }

    public static var blasCoreType: String { String(cString: zk_blas_corename()) }

    public static func setThreads(_ n: Int?) {
        zk_set_threads(Int32(n ?? defaultThreads))
    }

    public static var threads: Int { Int(zk_get_threads()) }

    public static var defaultThreads: Int {
        if let s = ProcessInfo.processInfo.environment["ZOO_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }
}
