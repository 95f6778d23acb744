import Foundation

/// A subcommand: one type each, like swift-argument-parser, parsed by the small `Arguments` below.
/// The core's commands live in Sources/zoo; a plugin's own (e.g. `zoo quantize`) in its folder.
public protocol Command {
    static var name: String { get }
    static var summary: String { get }
    /// Usage text; the first line is the synopsis.
    static var help: String { get }
    static var options: Set<String> { get }   // take a value: --name VALUE or --name=VALUE
    static var flags: Set<String> { get }     // booleans
    static func run(_ args: Arguments) throws
}

public struct Arguments {
    public var positional: [String] = []
    var values: [String: String] = [:]
    var set: Set<String> = []

    public init(_ argv: [String], options: Set<String>, flags: Set<String>) throws {
        var i = 0
        while i < argv.count {
            let a = argv[i]
            if a == "--" { positional += argv[(i + 1)...]; break }
            if a.hasPrefix("--") {
                var name = String(a.dropFirst(2)), value: String?
                if let eq = name.firstIndex(of: "=") { value = String(name[name.index(after: eq)...]); name = String(name[..<eq]) }
                if options.contains(name) {
                    if value == nil {
                        guard i + 1 < argv.count else { throw ZooError.usage("option --\(name) needs a value") }
                        i += 1; value = argv[i]
                    }
                    values[name] = value
                } else if flags.contains(name), value == nil {
                    set.insert(name)
                } else {
                    throw ZooError.usage("unknown option --\(name)")
                }
            } else if a.hasPrefix("-") && a.count > 1 && Double(a) == nil {
                throw ZooError.usage("unknown option \(a)")
            } else {
                positional.append(a)
            }
            i += 1
        }
    }

    public subscript(_ name: String) -> String? { values[name] }
    public func flag(_ name: String) -> Bool { set.contains(name) }

    /// The given options and flags that were set, as arguments for another command (sorted).
    public func forwarded(options: Set<String>, flags: Set<String> = []) -> [String] {
        values.keys.filter(options.contains).sorted().flatMap { ["--\($0)", values[$0]!] } + set.filter(flags.contains).sorted().map { "--\($0)" }
    }

    public func int(_ name: String, default d: Int? = nil, range: ClosedRange<Int> = 1...Int.max) throws -> Int? {
        guard let s = values[name] else { return d }
        guard let v = Int(s), range.contains(v) else { throw ZooError.usage("--\(name) takes a whole number in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound)), got '\(s)'") }
        return v
    }

    public func float(_ name: String, default d: Float, range: ClosedRange<Float>) throws -> Float {
        guard let s = values[name] else { return d }
        guard let v = Float(s), range.contains(v) else { throw ZooError.usage("--\(name) takes a number in \(range), got '\(s)'") }
        return v
    }

    public func required(_ name: String) throws -> String {
        guard let v = values[name] else { throw ZooError.usage("missing required option --\(name)") }
        return v
    }

    public func onlyPositional(_ what: String) throws -> String {
        guard positional.count == 1 else {
            throw ZooError.usage(positional.isEmpty ? "missing \(what)" : "expected one \(what), got: \(positional.joined(separator: " "))")
        }
        return positional[0]
    }
}

/// Progress and logs go to stderr; data goes to stdout.
public func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

public final class Progress {
    let label: String
    var start = Date(), base = 0       // the rate counts from `base` done at `start`
    var last = Date.distantPast, lastDone = -1
    let tty = isatty(2) != 0

    public init(_ label: String) { self.label = label }

    public func update(_ done: Int, _ total: Int) {
        let now = Date()
        // Again from here when a new epoch counts from 0, or when the first update comes midway (a resumed run).
        if done < lastDone || (lastDone < 0 && done > 1) { (start, base) = (now, done) }
        lastDone = done
        guard done == total || now.timeIntervalSince(last) > (tty ? 0.2 : 5) else { return }
        last = now
        let el = now.timeIntervalSince(start)
        var line = String(format: "%@: %d/%d (%.0f%%)", label, done, total, 100 * Double(done) / Double(max(total, 1)))
        if el > 0.5, done > base {   // a rate from the first instants would be noise
            let rate = Double(done - base) / el
            line += String(format: " %.1f/s, ETA %.0fs", rate, Double(total - done) / rate)
        }
        if tty {
            FileHandle.standardError.write(Data(("\r" + line + (done == total ? "\n" : "")).utf8))
        } else {
            log(line)
        }
    }
}

/// Lines of standard input, strictly UTF-8: a bad byte is an error naming the line.
public func readStdinLines() throws -> [String] { try textLines(FileHandle.standardInput.readDataToEndOfFile(), path: "<stdin>") }

/// One example per line, a TAB separating a sentence pair.
public func splitPair(_ line: String, lineNumber: Int) throws -> (String, String?) {
    let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
    guard parts.count <= 2 else { throw ZooError.badFile(path: "<stdin>", problem: "line \(lineNumber): more than one TAB (a TAB separates the two sentences of a pair)") }
    return (String(parts[0]), parts.count == 2 ? String(parts[1]) : nil)
}

public func jsonString(_ obj: Any) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
}
