import Dispatch
import Foundation

/// Writes `data` to `url` atomically: a temp file in the same folder, fsync, rename. A reader (or a
/// crash, a full disk, an interrupt) sees either the old file or the whole new one, never a
/// half-written one; a failed write removes its temp file and names the file and the reason.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let dir = url.deletingLastPathComponent()
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try writeFiles([(url.lastPathComponent, data)], in: dir)
}

/// The files of one output (a model's config.json, model.safetensors and vocab.txt), all or none.
/// When `dir` exists, each goes to a temp file first and the renames follow once every write has
/// succeeded; otherwise they are written into a hidden staging folder beside it, renamed to `dir`
/// at the end, so no `dir` appears until it is complete. A signal waits until this has finished
/// (or failed and cleaned up), so it never cuts it in half.
public func writeFiles(_ files: [(name: String, data: Data)], in dir: URL) throws {
    let fm = FileManager.default
    let parent = dir.deletingLastPathComponent()
    try fm.createDirectory(at: parent, withIntermediateDirectories: true)
    try Interrupt.uninterrupted {
        if !fm.fileExists(atPath: dir.path) {
            let staging = parent.appendingPathComponent(".\(dir.lastPathComponent).partial-\(getpid())").path
            do {
                try? fm.removeItem(atPath: staging)
                try fm.createDirectory(atPath: staging, withIntermediateDirectories: false)
                for f in files { try writeFile(f.data, to: staging + "/" + f.name, reportedAs: dir.appendingPathComponent(f.name).path) }
                if let s = pauseBeforeRename { Interrupt.pause("paused before renaming the staging folder to \(dir.path) (ZOO_PAUSE_BEFORE_RENAME)", seconds: s) }
                guard rename(staging, dir.path) == 0 else { throw ZooError.failed("\(dir.path): rename failed: \(String(cString: strerror(errno)))") }
            } catch {
                try? fm.removeItem(atPath: staging)
                throw error
            }
            return
        }
        let tmps = files.map { dir.appendingPathComponent(".\($0.name).tmp-\(getpid())").path }
        do {
            for (f, tmp) in zip(files, tmps) { try writeFile(f.data, to: tmp, reportedAs: dir.appendingPathComponent(f.name).path) }
            for (f, tmp) in zip(files, tmps) where rename(tmp, dir.appendingPathComponent(f.name).path) != 0 {
                throw ZooError.failed("\(dir.appendingPathComponent(f.name).path): rename failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            tmps.forEach { unlink($0) }
            throw error
        }
    }
}

/// ZOO_PAUSE_BEFORE_RENAME=S, for fault tests: a new output waits S seconds, whole in its staging
/// folder, before it is renamed into place (a signal then arrives in the middle of writing it).
private let pauseBeforeRename = ProcessInfo.processInfo.environment["ZOO_PAUSE_BEFORE_RENAME"].flatMap { Double($0) }

/// write(2) all of `data` to a new file and fsync it; errors name `reportedAs` and errno's reason
/// ("No space left on device", "File too large").
private func writeFile(_ data: Data, to path: String, reportedAs name: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw ZooError.failed("\(name): cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ZooError.failed("\(name): write failed after \(done) of \(buf.count) bytes: \(String(cString: strerror(n < 0 ? errno : ENOSPC)))") }
            done += n
        }
    }
    guard fsync(fd) == 0 else { throw ZooError.failed("\(name): fsync failed: \(String(cString: strerror(errno)))") }
}

/// SIGINT and SIGTERM. A training run (inside `Interrupt.graceful`) finishes its step, saves a
/// checkpoint and exits 130 with a line saying how to resume; anything else — and a second signal —
/// waits for an output being written (`uninterrupted`) to be whole or gone, removes this process's
/// lock files and exits (128 + signal). The handler runs on a thread of its own beside the work, so
/// without that wait it could empty a staging folder the work then renames into place. SIGXFSZ is
/// ignored, so a file-size limit is a failed write, not a crash.
public enum Interrupt {
    private static let lock = NSLock()
    private static let writing = NSLock()   // held by `uninterrupted`; a signal's exit takes it for good
    nonisolated(unsafe) private static var gracefulDepth = 0
    nonisolated(unsafe) private static var stopRequested = false
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var child: Int32?

    public static func install() {
        signal(SIGXFSZ, SIG_IGN)
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { received(sig) }
            source.resume()
            sources.append(source)
        }
    }

    /// True once a signal asked the running training loop to stop.
    public static var requested: Bool { lock.withLock { stopRequested } }

    /// Runs `body` with signals turned into `requested` (the first one) instead of an exit.
    public static func graceful<T>(_ body: () throws -> T) rethrows -> T {
        lock.withLock { gracefulDepth += 1 }
        defer { lock.withLock { gracefulDepth -= 1 } }
        return try body()
    }

    /// Says `message` on stderr, then waits until a signal asks to stop or `seconds` pass.
    static func pause(_ message: String, seconds: Double) {
        log(message)
        let end = Date().addingTimeInterval(seconds)
        while !requested && Date() < end { usleep(1000) }
    }

    /// Passes the first signal on to `pid` while it runs (a child zoo, which Foundation starts in a
    /// process group of its own, so Ctrl-C does not reach it), so it stops as gracefully as this one.
    public static func forward(to pid: Int32?) {
        let stop = lock.withLock { child = pid; return stopRequested }
        if stop, let pid { kill(pid, SIGINT) }
    }

    /// Runs `body` (which writes files and leaves them whole or removes them) with a signal's exit
    /// waiting until it is over.
    static func uninterrupted<T>(_ body: () throws -> T) rethrows -> T { try writing.withLock(body) }

    private static func received(_ sig: Int32) {
        let stopsGracefully: Bool = lock.withLock {
            guard gracefulDepth > 0 && !stopRequested else { return false }
            stopRequested = true
            if let child { kill(child, sig) }
            return true
        }
        if stopsGracefully {
            log("zoo: interrupted: stopping after this step with a checkpoint (signal again to stop at once)")
            return
        }
        writing.lock()   // kept until _exit: nothing is written after this
        unlockOutputs()
        log("zoo: interrupted (signal \(sig))")
        _exit(128 + sig)
    }
}
