import Foundation

/// Element types a safetensors file may declare. The zoo converts F32/F16/BF16/I8 (and F64) to float32.
public enum DType: String, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// A memory-mapped safetensors file. The header is validated completely on open: every tensor's
/// dtype, shape and byte range is checked against the file before any data is touched.
public final class SafeTensors {
    public struct Entry {
        public let dtype: DType
        public let shape: [Int]
        public let range: Range<Int>   // byte offsets within the data section
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let base: UnsafeMutableRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    public var names: [String] { entries.keys.sorted() }

    public init(url: URL) throws {
        path = url.path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ZooError.badFile(path: path, problem: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ZooError.badFile(path: path, problem: "cannot stat") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw ZooError.badFile(path: path, problem: "truncated: \(size) bytes, a safetensors file starts with an 8-byte header length") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ZooError.badFile(path: path, problem: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
        mappedSize = size
        do {
            (entries, metadata, dataStart) = try SafeTensors.parseHeader(base: UnsafeRawPointer(p), size: size, path: path)
        } catch {
            munmap(p, size)
            throw error
        }
    }

    deinit { munmap(base, mappedSize) }

    private static func parseHeader(base: UnsafeRawPointer, size: Int, path: String) throws -> ([String: Entry], [String: String], Int) {
        let headerLen = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLen <= UInt64(size - 8) else {
            // Not a safetensors header; say so plainly if it is PyTorch's zip or pickle format.
            let magic = base.load(as: (UInt8, UInt8).self)
            if magic == (0x50, 0x4B) || (magic.0 == 0x80 && (2...5).contains(magic.1)) {
                throw ZooError.badFile(path: path, problem: "this is a PyTorch pickle/zip checkpoint, not safetensors; zoo never unpickles. Convert it with: python -c \"from transformers import AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"")
            }
            throw ZooError.badFile(path: path, problem: "header length \(headerLen) runs past the end of the file (\(size) bytes)")
        }
        guard headerLen <= 100_000_000 else { throw ZooError.badFile(path: path, problem: "header length \(headerLen) is implausibly large") }
        let n = Int(headerLen)
        let headerData = Data(bytes: base + 8, count: n)
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let dict = json as? [String: Any] else {
            throw ZooError.badFile(path: path, problem: "header is not a JSON object")
        }
        let dataStart = 8 + n
        let dataSize = size - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                if let m = value as? [String: Any] { for (k, v) in m { metadata[k] = "\(v)" } }
                continue
            }
            guard let info = value as? [String: Any] else { throw ZooError.badFile(path: path, problem: "tensor '\(name)': entry is not an object") }
            guard let dts = info["dtype"] as? String, let dtype = DType(rawValue: dts) else {
                throw ZooError.badFile(path: path, problem: "tensor '\(name)': unknown dtype \(info["dtype"].map { "\($0)" } ?? "(missing)")")
            }
            guard let shapeAny = info["shape"] as? [Any], let shape = intArray(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw ZooError.badFile(path: path, problem: "tensor '\(name)': shape must be a list of non-negative integers")
            }
            guard let offAny = info["data_offsets"] as? [Any], let off = intArray(offAny), off.count == 2 else {
                throw ZooError.badFile(path: path, problem: "tensor '\(name)': data_offsets must be [begin, end]")
            }
            let (begin, end) = (off[0], off[1])
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw ZooError.badFile(path: path, problem: "tensor '\(name)': data_offsets [\(begin), \(end)] out of range (data section is \(dataSize) bytes)")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (m, o) = acc.0.multipliedReportingOverflow(by: d); return (m, acc.1 || o)
            }
            let (bytes, tooMany) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, !tooMany, bytes == end - begin else {
                throw ZooError.badFile(path: path, problem: "tensor '\(name)': \(end - begin) bytes do not hold shape \(shape) of \(dtype.rawValue)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        let sorted = entries.sorted { $0.value.range.lowerBound < $1.value.range.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.value.range.upperBound > b.value.range.lowerBound {
            throw ZooError.badFile(path: path, problem: "tensors '\(a.key)' and '\(b.key)' overlap")
        }
        return (entries, metadata, dataStart)
    }

    private static func intArray(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            guard let n = v as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d == d.rounded(), abs(d) < 9e15 else { return nil }
            out.append(Int(d))
        }
        return out
    }

    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw ZooError.badFile(path: path, problem: "missing tensor '\(name)'") }
        return e
    }

    /// Raw bytes of a tensor (valid while this object lives).
    public func rawPointer(_ name: String) throws -> UnsafeRawPointer {
        UnsafeRawPointer(base) + dataStart + (try entry(name)).range.lowerBound
    }

    /// A tensor converted to float32, checked against the shape the caller expects.
    public func tensor(_ name: String, shape expected: [Int]? = nil) throws -> Tensor {
        let e = try entry(name)
        if let expected, expected != e.shape {
            throw ZooError.badFile(path: path, problem: "tensor '\(name)' has shape \(e.shape), config.json implies \(expected)")
        }
        let t = Tensor(shape: e.shape)
        let src = try rawPointer(name)
        let n = e.count
        defer { release(e) }
        switch e.dtype {
        case .F32:
            memcpy(t.data, src, n * 4)
        case .F64:
            for i in 0..<n { t.data[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        case .F16:
            for i in 0..<n { t.data[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
        case .BF16:
            for i in 0..<n { t.data[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
        case .I8:
            for i in 0..<n { t.data[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        default:
            throw ZooError.badFile(path: path, problem: "tensor '\(name)' has dtype \(e.dtype.rawValue); expected a float type (F32, F16, BF16) or I8")
        }
        return t
    }

    /// An embedding table whose rows are read from the file when used (float32 only; any other
    /// dtype is converted into memory). A vocabulary table is mostly rows no input touches, so it
    /// is not kept resident.
    public func rows(_ name: String, shape expected: [Int]) throws -> RowTable {
        let e = try entry(name)
        guard e.dtype == .F32, e.shape == expected, expected.count == 2 else { return .memory(try tensor(name, shape: expected)) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ZooError.badFile(path: path, problem: "cannot reopen: \(String(cString: strerror(errno)))") }
        return .file(FileRows(fd: fd, path: path, offset: dataStart + e.range.lowerBound, rows: expected[0], width: expected[1]))
    }

    /// Drops the file pages of a tensor already converted, so loading a model does not keep the
    /// whole file resident beside the converted copy. (Read-only private mapping: pages read again
    /// later are simply faulted in from the file.)
    private func release(_ e: Entry) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (dataStart + e.range.lowerBound + page - 1) / page * page
        let end = (dataStart + e.range.upperBound) / page * page
        if end > start { madvise(base + start, end - start, Int32(MADV_DONTNEED)) }
    }

    /// Writes float32 tensors as a safetensors file, atomically.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        try write(tensors.map { ($0.0, RawTensor($0.1)) }, metadata: metadata, to: url)
    }

    /// Writes tensors of any dtype as a safetensors file, atomically.
    public static func write(_ tensors: [(String, RawTensor)], metadata: [String: String] = [:], to url: URL) throws {
        try writeAtomically(try encode(tensors, metadata: metadata), to: url)
    }

    public static func encode(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) throws -> Data {
        try encode(tensors.map { ($0.0, RawTensor($0.1)) }, metadata: metadata)
    }

    /// The bytes of a safetensors file of these tensors.
    public static func encode(_ tensors: [(String, RawTensor)], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, t) in tensors {
            precondition(t.bytes.count == t.shape.reduce(1, *) * t.dtype.size, "\(name): bytes do not match shape")
            header[name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]] as [String: Any]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json)
        for (_, t) in tensors { out.append(t.bytes) }
        return out
    }

    /// The stored bytes of a tensor, checked to have the given dtype and shape.
    public func raw(_ name: String, dtype: DType, shape expected: [Int]) throws -> RawTensor {
        let e = try entry(name)
        guard e.dtype == dtype, e.shape == expected else {
            throw ZooError.badFile(path: path, problem: "tensor '\(name)' is \(e.dtype.rawValue) \(e.shape), expected \(dtype.rawValue) \(expected)")
        }
        defer { release(e) }
        return RawTensor(dtype: dtype, shape: expected, bytes: Data(bytes: try rawPointer(name), count: e.range.count))
    }
}

/// A tensor as stored in a file: dtype, shape and little-endian bytes.
public struct RawTensor {
    public let dtype: DType
    public let shape: [Int]
    public let bytes: Data

    public init(dtype: DType, shape: [Int], bytes: Data) { (self.dtype, self.shape, self.bytes) = (dtype, shape, bytes) }
    public init(_ t: Tensor) { self.init(dtype: .F32, shape: t.shape, bytes: Data(bytes: t.data, count: t.count * 4)) }
}

/// Rows of a [rows, width] float32 table, in memory or read on demand from a file.
public enum RowTable {
    case memory(Tensor)
    case file(FileRows)

    public var count: Int {
        switch self {
        case .memory(let t): return t.count
        case .file(let f): return f.rows * f.width
        }
    }

    /// dst[i] = row ids[i], for every i.
    public func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: UnsafeMutablePointer<Float>) throws {
        switch self {
        case .memory(let t):
            let w = t.shape[1]
            for (i, id) in ids.enumerated() { (dst + i * w).update(from: t.data + Int(id) * w, count: w) }
        case .file(let f):
            try f.gather(ids, into: dst)
        }
    }
}

public final class FileRows {
    let fd: Int32
    let path: String
    let offset: Int
    public let rows: Int, width: Int

    init(fd: Int32, path: String, offset: Int, rows: Int, width: Int) {
        (self.fd, self.path, self.offset, self.rows, self.width) = (fd, path, offset, rows, width)
    }

    deinit { close(fd) }

    func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: UnsafeMutablePointer<Float>) throws {
        let bytes = width * 4
        for (i, id) in ids.enumerated() {
            let n = pread(fd, dst + i * width, bytes, off_t(offset + Int(id) * bytes))
            guard n == bytes else { throw ZooError.badFile(path: path, problem: "short read of embedding row \(id)") }
        }
    }
}
