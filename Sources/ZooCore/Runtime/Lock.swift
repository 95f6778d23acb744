import Foundation

/// An exclusive flock(2) on `path` (created if missing): the open descriptor, which holds the lock
/// until `unlockFile`; nil when another process holds it and `wait` is false. A holder removes the
/// file as it lets go (nothing is left beside an output), so a locker that got the lock on a file
/// removed meanwhile tries again on the one there now.
public func lockFile(_ path: String, wait: Bool) throws -> Int32? {
    while true {
        let fd = open(path, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw ZooError.failed("\(path): cannot open the lock file: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) == 0 else {
            let err = errno
            close(fd)
            if err == EWOULDBLOCK && !wait { return nil }
            throw ZooError.failed("\(path): cannot lock: \(String(cString: strerror(err)))")
        }
        var held = stat(), now = stat()
        if fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev { return fd }
        close(fd)
    }
}

/// Removes the lock file, then lets go of the lock.
public func unlockFile(_ path: String, _ fd: Int32) {
    unlink(path)
    close(fd)
}

/// Output locks this process holds until it exits (then removed, also when interrupted).
nonisolated(unsafe) private var heldLocks: [(path: String, fd: Int32)] = []

/// Removes the lock files of `heldLocks` and lets go of the locks: at exit, and on a signal's exit
/// (which runs while `Interrupt.uninterrupted` is held, so none is being added).
func unlockOutputs() {
    for l in heldLocks { unlockFile(l.path, l.fd) }
    heldLocks = []
}

/// Takes an exclusive lock on `dir`.lock for the rest of the process, so a second zoo writing the
/// same --out is refused (exit 1) instead of interleaving checkpoints with the first. A `zoo table`
/// step already holds its cell's lock and tells its child so (ZOO_LOCK_HELD).
public func lockOutput(_ dir: URL) throws {
    let path = dir.standardizedFileURL.path
    if ProcessInfo.processInfo.environment["ZOO_LOCK_HELD"] == path { return }
    try FileManager.default.createDirectory(at: dir.standardizedFileURL.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Interrupt.uninterrupted {   // a signal between creating the lock file and recording it would leave it behind
        guard let fd = try lockFile(path + ".lock", wait: false) else {
            throw ZooError.failed("\(path): another zoo is writing there (\(path).lock is locked); wait for it or choose another --out")
        }
        if heldLocks.isEmpty { atexit { unlockOutputs() } }
        heldLocks.append((path + ".lock", fd))
    }
}
