import Foundation

/// An exclusive flock(2) on `path` (created if missing): the open descriptor, which holds the lock
/// until it is closed; nil when another process holds it and `wait` is false.
public func lockFile(_ path: String, wait: Bool) throws -> Int32? {
    let fd = open(path, O_CREAT | O_RDWR, 0o644)
    guard fd >= 0 else { throw ZooError.failed("\(path): cannot open the lock file: \(String(cString: strerror(errno)))") }
    if flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) == 0 { return fd }
    let err = errno
    close(fd)
    if err == EWOULDBLOCK && !wait { return nil }
    throw ZooError.failed("\(path): cannot lock: \(String(cString: strerror(err)))")
}

/// Output locks this process holds until it exits.
nonisolated(unsafe) private var heldLocks: [Int32] = []

/// Takes an exclusive lock on `dir`.lock for the rest of the process, so a second zoo writing the
/// same --out is refused (exit 1) instead of interleaving checkpoints with the first. A `zoo table`
/// step already holds its cell's lock and tells its child so (ZOO_LOCK_HELD).
public func lockOutput(_ dir: URL) throws {
    let path = dir.standardizedFileURL.path
    if ProcessInfo.processInfo.environment["ZOO_LOCK_HELD"] == path { return }
    try FileManager.default.createDirectory(at: dir.standardizedFileURL.deletingLastPathComponent(), withIntermediateDirectories: true)
    guard let fd = try lockFile(path + ".lock", wait: false) else {
        throw ZooError.failed("\(path): another zoo is writing there (\(path).lock is locked); wait for it or choose another --out")
    }
    heldLocks.append(fd)
}
