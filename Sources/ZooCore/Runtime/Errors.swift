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
    /// Stopped by SIGINT/SIGTERM after saving what lets it continue: exit code 130.
    case interrupted(String)

    public var description: String {
        switch self {
        case .usage(let m): return m
        case .badFile(let path, let problem): return "\(path): \(problem)"
        case .failed(let m), .interrupted(let m): return m
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .usage: return 2
        case .interrupted: return 130
        default: return 1
        }
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
