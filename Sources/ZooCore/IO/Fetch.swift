import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloading, unpacking and verifying artifacts (weights, GLUE). Everything lands in a temporary
/// folder first and is moved into place only once every sha256 matches.
public enum Fetch {
    /// Where downloads are cached: $ZOO_CACHE, else ~/.cache/zoo.
    public static var cacheDir: URL {
        if let c = ProcessInfo.processInfo.environment["ZOO_CACHE"], !c.isEmpty { return URL(fileURLWithPath: c) }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/zoo")
    }

    /// Runs a program; throws with its stderr when it fails.
    @discardableResult
    public static func run(_ argv: [String], quiet: Bool = true) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = quiet ? err : FileHandle.standardError
        do { try p.run() } catch { throw ZooError.failed("cannot run \(argv[0]): \(error.localizedDescription)") }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = quiet ? err.fileHandleForReading.readDataToEndOfFile() : Data()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let msg = String(decoding: e, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
            throw ZooError.failed("\(argv.prefix(4).joined(separator: " ")) failed (exit \(p.terminationStatus)): \(msg)")
        }
        return String(decoding: o, as: UTF8.self)
    }

    public static func sha256(_ url: URL) throws -> String {
        guard FileManager.default.fileExists(atPath: url.path) else { throw ZooError.badFile(path: url.path, problem: "missing") }
        let out = try run(["sha256sum", "--", url.path])
        return String(out.prefix(64))
    }

    /// Downloads `url` to `dest` (atomically). Throws a message naming the URL when unreachable.
    public static func download(_ url: URL, to dest: URL) throws {
        final class Box: @unchecked Sendable { var result: Result<Data, Error> = .failure(ZooError.failed("no response")) }
        let sem = DispatchSemaphore(value: 0)
        let box = Box()
        let task = URLSession.shared.dataTask(with: URLRequest(url: url, timeoutInterval: 60)) { data, response, error in
            if let error {
                box.result = .failure(error)
            } else if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                box.result = .failure(ZooError.failed("HTTP \(http.statusCode)"))
            } else {
                box.result = .success(data ?? Data())
            }
            sem.signal()
        }
        task.resume()
        sem.wait()
        switch box.result {
        case .success(let data): try writeAtomically(data, to: dest)
        case .failure(let e): throw ZooError.failed("cannot download \(url.absoluteString): \((e as? ZooError)?.description ?? e.localizedDescription)")
        }
    }

    /// Unpacks a zip archive (a wheel is one) with Python's zipfile module.
    public static func unzip(_ archive: URL, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try run(["python3", "-m", "zipfile", "-e", archive.path, dir.path])
    }

    /// Checks every `relative path → sha256` under `dir`; returns the first mismatch as an error.
    public static func verify(_ files: [String: String], in dir: URL) throws {
        for (name, want) in files.sorted(by: { $0.key < $1.key }) {
            let got = try sha256(dir.appendingPathComponent(name))
            guard got == want else {
                throw ZooError.badFile(path: dir.appendingPathComponent(name).path, problem: "sha256 \(got) does not match the manifest's \(want)")
            }
        }
    }

    /// A fresh temporary folder beside `final`, so the last step is a rename on the same filesystem.
    public static func staging(for final: URL) throws -> URL {
        let tmp = final.deletingLastPathComponent().appendingPathComponent(".\(final.lastPathComponent).partial-\(getpid())")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        return tmp
    }

    /// Moves `staged` to `final`, replacing what was there.
    public static func commit(_ staged: URL, to final: URL) throws {
        if FileManager.default.fileExists(atPath: final.path) { try FileManager.default.removeItem(at: final) }
        try FileManager.default.moveItem(at: staged, to: final)
    }

    /// Finds a manifest: the explicit path, else `<repo>/<relative>` searched upwards from the current
    /// directory and from the executable's directory.
    public static func manifest(_ explicit: String?, relative: String) throws -> URL {
        if let explicit { return URL(fileURLWithPath: explicit) }
        let starts = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                      URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()]
        for start in starts {
            var d = start
            for _ in 0..<8 {
                let c = d.appendingPathComponent(relative)
                if FileManager.default.fileExists(atPath: c.path) { return c }
                d = d.deletingLastPathComponent()
            }
        }
        throw ZooError.failed("cannot find \(relative) (run zoo from the repository, or pass --manifest FILE)")
    }

    public static func loadJSON(_ url: URL) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw ZooError.badFile(path: url.path, problem: "cannot read file") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw ZooError.badFile(path: url.path, problem: "invalid JSON") }
        return obj
    }
}
