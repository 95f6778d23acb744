import Foundation

/// Every failure the zoo reports to a user. `description` is the one-line message the CLI prints;
/// it names the file (or field) and the problem.
public enum ZooError: Error, CustomStringConvertible, Equatable {
    /// Bad command line: exit code 2.
    case usage(String)
    /// A file that exists but is wrong (corrupt, mismatched, malformed): exit code 1.
    case badFile(path: String, problem: String)
    /// Anything else that went wrong: exit code 1.
    case failed(String)

    public var description: String {
        switch self {
        case .usage(let m): return m
        case .badFile(let path, let problem): return "\(path): \(problem)"
        case .failed(let m): return m
        }
    }

    public var exitCode: Int32 {
        if case .usage = self { return 2 }
        return 1
    }
}

/// Writes `data` to `url` atomically: a temp file in the same folder, fsync, rename. A reader (or a
/// crash) sees either the old file or the whole new one, never a half-written one.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let dir = url.deletingLastPathComponent()
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
        throw ZooError.failed("\(tmp.path): cannot create file")
    }
    let handle = try FileHandle(forWritingTo: tmp)
    do {
        try handle.write(contentsOf: data)
        try handle.synchronize()
        try handle.close()
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw ZooError.failed("\(url.path): write failed: \(error.localizedDescription)")
    }
    if rename(tmp.path, url.path) != 0 {
        try? FileManager.default.removeItem(at: tmp)
        throw ZooError.failed("\(url.path): rename failed: \(String(cString: strerror(errno)))")
    }
}

/// The bytes of a file, nil when it cannot be read. An empty regular file is answered without
/// Foundation, whose readers (Swift 6.3's) leak a 4 KB buffer on every empty file.
public func readFile(_ url: URL) -> Data? {
    var st = stat()
    if stat(url.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size == 0 { return Data() }
    return FileManager.default.contents(atPath: url.path)
}

/// Reads a UTF-8 text file, naming the file when it is missing or not UTF-8.
public func readText(_ url: URL) throws -> String {
    guard let data = readFile(url) else {
        throw ZooError.badFile(path: url.path, problem: "cannot read file (missing or unreadable)")
    }
    guard let s = String(validatingUTF8Data: data) else {
        throw ZooError.badFile(path: url.path, problem: "not valid UTF-8")
    }
    return s
}

extension String {
    /// Strict UTF-8 decoding: nil on any invalid byte sequence (Foundation's decoder would repair it).
    public init?(validatingUTF8Data data: Data) {
        var it = data.makeIterator()
        var codec = UTF8()
        var scalars = String.UnicodeScalarView()
        scalars.reserveCapacity(data.count)
        loop: while true {
            switch codec.decode(&it) {
            case .scalarValue(let s): scalars.append(s)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(scalars)
    }
}
